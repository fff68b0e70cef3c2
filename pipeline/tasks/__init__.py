"""The task LightningModules, one per task kind (pipeline/kinds/<kind>.py names its own)."""
