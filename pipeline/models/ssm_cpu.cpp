// Mamba's selective scan for CPUs, fused: one pass over the sequence per direction, the (N, E) states of
// a few channels held in L1/L2 and never written out, forward and backward (and, at the end, the causal
// conv with its SiLU). The idea of Mamba's own
// kernel (Gu & Dao 2023, §3.3: discretise inside the scan; backward recomputes the states from chunk
// checkpoints instead of storing them), written for plain C++ with GCC vector extensions (8 floats).
// No torch headers: built in seconds with `c++ -O3 -march=native` by pipeline/models/ssm_cpu.py,
// which falls back to the PyTorch scan when there is no compiler.
//
// Layout (all fp32, contiguous): Δ, x, y (B, L, E); B, C (B, L, N); A as Aᵀ (N, E), and Aᵀ log2 e for
// exp2; D (E); an optional mask (B, L), 0 at pads, which get Δ = 0. E is a multiple of 8: the caller
// pads channels with x = A = D = 0, which stay zero.
// h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t,  y_t = C_t · h_t + D x_t.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
constexpr int V = 8;

inline v8 ld(const float* p) { v8 r; std::memcpy(&r, p, sizeof r); return r; }
inline void st(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }
inline v8 splat(float s) { return v8{} + s; }
inline float hsum(v8 v) { float s = 0; for (int i = 0; i < V; i++) s += v[i]; return s; }

// 2^x: 2^round(x) from the exponent bits times 2^f, |f| <= 1/2, by its Taylor series to degree 7
// (truncation < 6e-9 relative). x is clamped to [-126, 126]: no denormals, and 2^-126 ~ 0 for a decay.
inline v8 exp2v(v8 x) {
    x = x < -126.f ? splat(-126.f) : x;
    x = x > 126.f ? splat(126.f) : x;
    v8 r = (x + 12582912.f) - 12582912.f;  // round to nearest (1.5 * 2^23)
    v8 z = (x - r) * 0.69314718055994531f;  // f ln 2
    v8 p = splat(1.f / 5040);
    p = p * z + 1.f / 720; p = p * z + 1.f / 120; p = p * z + 1.f / 24;
    p = p * z + 1.f / 6;  p = p * z + 0.5f;     p = p * z + 1.f;      p = p * z + 1.f;
    v8i bits = (__builtin_convertvector(r, v8i) + 127) << 23;
    v8 scale; std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

inline v8 sigmoid(v8 z) { return 1.f / (1.f + exp2v(z * -1.44269504088896341f)); }

// log(1 + e^x) = max(x, 0) + log1p(e^-|x|), and log1p(u) = 2 atanh(u / (2 + u)) by its series, the
// argument at most 1/3 (truncation < 2e-8 relative).
inline v8 softplus(v8 x) {
    v8 u = exp2v((x < 0.f ? x : -x) * 1.44269504088896341f), q = u / (2.f + u), q2 = q * q;
    v8 p = splat(1.f / 13);
    p = p * q2 + 1.f / 11; p = p * q2 + 1.f / 9; p = p * q2 + 1.f / 7; p = p * q2 + 1.f / 5;
    p = p * q2 + 1.f / 3;  p = p * q2 + 1.f;
    return (x > 0.f ? x : v8{}) + 2.f * q * p;
}

// chunk: checkpoint spacing (the conv: K); width: vectors of channels per task; softplus: Δ comes before
// its softplus, which the scan applies
struct Shape { int B, L, E, N, chunk, width, softplus; };

// Δ at `at` (row `row` of B × L): softplus'd if asked, times the row's mask (0 at a pad) if one is given.
inline v8 delta(const Shape& s, const float* dt, const float* mask, size_t row, size_t at) {
    v8 d = s.softplus ? softplus(ld(dt + at)) : ld(dt + at);
    return mask ? d * mask[row] : d;
}

// Tasks are (batch row, block of `width` vectors); threads take them in turn. With OpenMP, the threads
// are torch's own (the process has one libgomp): more threads than cores would stall both.
template <class F> void parallel(const Shape& s, int threads, F body) {
    int blocks = (s.E / V + s.width - 1) / s.width, tasks = s.B * blocks;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, std::min(threads, tasks)))
    for (int i = 0; i < tasks; i++) body(i / blocks, i % blocks);
#else
    std::atomic<int> next{0};
    auto worker = [&] { for (int i; (i = next++) < tasks;) body(i / blocks, i % blocks); };
    std::vector<std::thread> pool;
    for (int k = 1; k < std::min(threads, tasks); k++) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
#endif
}

}  // namespace

// y (B, L, E), with Mamba's skip D x added, and the state entering every chunk, ckpt (ceil(L / chunk),
// B, N, E). NV vectors of channels side by side: independent chains for the CPU to overlap.
template <int NV>
void forward_block(const Shape& s, int b, int e0, const float* dt, const float* x, const float* Bm,
                   const float* Cm, const float* At2, const float* D, const float* mask, float* y, float* ckpt) {
    const int E = s.E, N = s.N;
    std::vector<v8> h(N * NV, v8{});
    for (int t = 0; t < s.L; t++) {
        if (t % s.chunk == 0) {
            float* c = ckpt + ((size_t)(t / s.chunk) * s.B + b) * N * E + e0;
            for (int n = 0; n < N; n++)
                for (int j = 0; j < NV; j++) st(c + n * E + j * V, h[n * NV + j]);
        }
        const size_t row = (size_t)b * s.L + t;
        const float *Br = Bm + row * N, *Cr = Cm + row * N;
        v8 d[NV], u[NV], acc[NV];
        for (int j = 0; j < NV; j++) {
            d[j] = delta(s, dt, mask, row, row * E + e0 + j * V);
            u[j] = d[j] * ld(x + row * E + e0 + j * V);
            acc[j] = v8{};
        }
        for (int n = 0; n < N; n++) {
            for (int j = 0; j < NV; j++) {
                v8 hn = exp2v(d[j] * ld(At2 + n * E + e0 + j * V)) * h[n * NV + j] + Br[n] * u[j];
                h[n * NV + j] = hn;
                acc[j] += Cr[n] * hn;
            }
        }
        for (int j = 0; j < NV; j++)
            st(y + row * E + e0 + j * V, acc[j] + ld(D + e0 + j * V) * ld(x + row * E + e0 + j * V));
    }
}

extern "C" void scan_forward(Shape s, const float* dt, const float* x, const float* Bm, const float* Cm,
                  const float* At2, const float* D, const float* mask, float* y, float* ckpt, int threads) {
    parallel(s, threads, [&](int b, int blk) {
        const int e0 = blk * s.width * V, nv = std::min(s.width, s.E / V - blk * s.width);
        switch (nv) {
            case 4: forward_block<4>(s, b, e0, dt, x, Bm, Cm, At2, D, mask, y, ckpt); break;
            case 3: forward_block<3>(s, b, e0, dt, x, Bm, Cm, At2, D, mask, y, ckpt); break;
            case 2: forward_block<2>(s, b, e0, dt, x, Bm, Cm, At2, D, mask, y, ckpt); break;
            default:
                for (int j = 0; j < nv; j++) forward_block<1>(s, b, e0 + j * V, dt, x, Bm, Cm, At2, D, mask, y, ckpt);
        }
    });
}

// Gradients from gy: gdt, gx (B, L, E); per channel block p, gB and gC (P, B, L, N) and, per batch row,
// gAᵀ (B, N, E) and gD (B, E), for the caller to sum. A chunk at a time from the last: its states are
// recomputed from its checkpoint (decays kept too), then ∂loss/∂h_t = C_t gy_t + a_{t+1} ∂loss/∂h_{t+1}
// runs right to left.
struct Grads { float *gdt, *gx, *gB, *gC, *gA, *gD; };

template <int NV>
void backward_block(const Shape& s, int b, int blk, int e0, const float* dt, const float* x, const float* Bm,
                    const float* Cm, const float* At2, const float* At, const float* D, const float* mask,
                    const float* ckpt, const float* gy, const Grads& out) {
    const int E = s.E, N = s.N, L = s.L, S = N * NV;
    std::vector<v8> hs((s.chunk + 1) * S), as(s.chunk * S), g(S, v8{}), gA(S, v8{}), gD(NV, v8{});
    const size_t part = (size_t)blk * s.B * L * N;
    for (int k = (L - 1) / s.chunk; k >= 0; k--) {
        const int t0 = k * s.chunk, t1 = std::min(L, t0 + s.chunk);
        const float* c = ckpt + ((size_t)k * s.B + b) * N * E + e0;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < NV; j++) hs[n * NV + j] = ld(c + n * E + j * V);
        for (int t = t0; t < t1; t++) {  // hs[r + 1] = h_t, as[r] = a_t for r = t - t0
            const size_t row = (size_t)b * L + t;
            const float* Br = Bm + row * N;
            v8 *h = &hs[(t - t0) * S], *a = &as[(t - t0) * S], d[NV], u[NV];
            for (int j = 0; j < NV; j++) {
                d[j] = delta(s, dt, mask, row, row * E + e0 + j * V);
                u[j] = d[j] * ld(x + row * E + e0 + j * V);
            }
            for (int n = 0; n < N; n++)
                for (int j = 0; j < NV; j++) {
                    const int i = n * NV + j;
                    a[i] = exp2v(d[j] * ld(At2 + n * E + e0 + j * V));
                    h[S + i] = a[i] * h[i] + Br[n] * u[j];
                }
        }
        for (int t = t1 - 1; t >= t0; t--) {
            const size_t row = (size_t)b * L + t;
            const float *Br = Bm + row * N, *Cr = Cm + row * N;
            const v8 *h = &hs[(t - t0) * S], *a = &as[(t - t0) * S];
            v8 d[NV], xv[NV], u[NV], go[NV], gu[NV], gd[NV];
            for (int j = 0; j < NV; j++) {
                const size_t at = row * E + e0 + j * V;
                d[j] = delta(s, dt, mask, row, at), xv[j] = ld(x + at), u[j] = d[j] * xv[j], go[j] = ld(gy + at);
                gu[j] = gd[j] = v8{};
            }
            for (int n = 0; n < N; n++) {
                v8 cB{}, cC{};
                for (int j = 0; j < NV; j++) {
                    const int i = n * NV + j;
                    v8 gh = g[i] + Cr[n] * go[j];
                    cC += h[S + i] * go[j];  // y = C · h
                    cB += gh * u[j];         // Δ x B enters h
                    gu[j] += gh * Br[n];
                    v8 gz = gh * a[i] * h[i];  // ∂loss/∂(Δ A): the decay met h_{t-1}
                    gd[j] += gz * ld(At + n * E + e0 + j * V);
                    gA[i] += gz * d[j];
                    g[i] = gh * a[i];
                }
                out.gB[part + row * N + n] = hsum(cB);
                out.gC[part + row * N + n] = hsum(cC);
            }
            for (int j = 0; j < NV; j++) {
                const size_t at = row * E + e0 + j * V;
                v8 gdelta = gd[j] + gu[j] * xv[j];  // then through the softplus and the mask
                if (s.softplus) gdelta *= sigmoid(ld(dt + at));
                st(out.gdt + at, mask ? gdelta * mask[row] : gdelta);
                st(out.gx + at, gu[j] * d[j] + ld(D + e0 + j * V) * go[j]);  // y also has D x
                gD[j] += go[j] * xv[j];
            }
        }
    }
    for (int n = 0; n < N; n++)
        for (int j = 0; j < NV; j++) st(out.gA + ((size_t)b * N + n) * E + e0 + j * V, gA[n * NV + j]);
    for (int j = 0; j < NV; j++) st(out.gD + (size_t)b * E + e0 + j * V, gD[j]);
}

extern "C" void scan_backward(Shape s, const float* dt, const float* x, const float* Bm, const float* Cm,
                              const float* At2, const float* At, const float* D, const float* mask,
                              const float* ckpt, const float* gy, float* gdt, float* gx, float* gB, float* gC,
                              float* gA, float* gD,
                              int threads) {
    const Grads out{gdt, gx, gB, gC, gA, gD};
    parallel(s, threads, [&](int b, int blk) {
        const int e0 = blk * s.width * V, nv = std::min(s.width, s.E / V - blk * s.width);
        switch (nv) {  // the gB, gC partial sums are per block: a narrower last block is still one
            case 4: backward_block<4>(s, b, blk, e0, dt, x, Bm, Cm, At2, At, D, mask, ckpt, gy, out); break;
            case 3: backward_block<3>(s, b, blk, e0, dt, x, Bm, Cm, At2, At, D, mask, ckpt, gy, out); break;
            case 2: backward_block<2>(s, b, blk, e0, dt, x, Bm, Cm, At2, At, D, mask, ckpt, gy, out); break;
            default: backward_block<1>(s, b, blk, e0, dt, x, Bm, Cm, At2, At, D, mask, ckpt, gy, out);
        }
    });
}

// Mamba's depthwise causal conv and its SiLU, fused: xc_t = silu(bias + Σ_k w_k x_{t-K+1+k}), x and xc
// (B, L, E) with E a multiple of 8, w as wᵀ (K, E). One pass forward; one pass backward, which
// recomputes the pre-activation and returns gx, and per batch row gwᵀ (B, K, E) and gbias (B, E).
namespace {

inline v8 conv_at(const Shape& s, const float* x, const float* wt, const float* bias, size_t row, int t, int e) {
    v8 z = ld(bias + e);
    for (int k = std::max(0, s.chunk - 1 - t); k < s.chunk; k++)  // s.chunk holds K
        z += ld(wt + k * s.E + e) * ld(x + (row - (s.chunk - 1 - k)) * s.E + e);
    return z;
}

}  // namespace

extern "C" void conv_forward(Shape s, const float* x, const float* wt, const float* bias, float* out, int threads) {
    parallel(s, threads, [&](int b, int blk) {
        const int e1 = std::min(s.E, (blk + 1) * s.width * V);
        for (int t = 0; t < s.L; t++) {
            const size_t row = (size_t)b * s.L + t;
            for (int e = blk * s.width * V; e < e1; e += V) {
                v8 z = conv_at(s, x, wt, bias, row, t, e);
                st(out + row * s.E + e, z * sigmoid(z));
            }
        }
    });
}

extern "C" void conv_backward(Shape s, const float* x, const float* wt, const float* bias, const float* gout,
                              float* gx, float* gwt, float* gbias, int threads) {
    const int K = s.chunk, E = s.E;
    parallel(s, threads, [&](int b, int blk) {
        const int e0 = blk * s.width * V, nv = (std::min(E, (blk + 1) * s.width * V) - e0) / V;
        // per vector j: gz[j K + i] = ∂loss/∂pre-activation at t + i (zero past the end), gw, gbias
        std::vector<v8> gz(nv * K, v8{}), gw(nv * K, v8{}), gb(nv, v8{});
        for (int t = s.L - 1; t >= 0; t--) {
            const size_t row = (size_t)b * s.L + t;
            for (int j = 0; j < nv; j++) {
                const int e = e0 + j * V;
                v8 z = conv_at(s, x, wt, bias, row, t, e), sg = sigmoid(z), *r = &gz[j * K];
                for (int i = K - 1; i > 0; i--) r[i] = r[i - 1];
                v8 g = r[0] = ld(gout + row * E + e) * sg * (1.f + z * (1.f - sg));
                gb[j] += g;
                v8 acc{};  // x_t feeds the output t + K - 1 - k through w_k
                for (int k = 0; k < K; k++) acc += ld(wt + k * E + e) * r[K - 1 - k];
                for (int k = std::max(0, K - 1 - t); k < K; k++)
                    gw[j * K + k] += g * ld(x + (row - (K - 1 - k)) * E + e);
                st(gx + row * E + e, acc);
            }
        }
        for (int j = 0; j < nv; j++) {
            for (int k = 0; k < K; k++) st(gwt + ((size_t)b * K + k) * E + e0 + j * V, gw[j * K + k]);
            st(gbias + (size_t)b * E + e0 + j * V, gb[j]);
        }
    });
}

// Mamba's output gate y ⊙ silu(z) over `rows` rows of E channels (E a multiple of 8), the rows of y and z
// `ys` and `zs` floats apart (z is a view into the in-projection's output); out, gy, gz contiguous.
extern "C" void gate_forward(int rows, int E, const float* y, int ys, const float* z, int zs, float* out,
                             int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < rows; r++)
        for (int e = 0; e < E; e += V) {
            v8 zv = ld(z + (size_t)r * zs + e);
            st(out + (size_t)r * E + e, ld(y + (size_t)r * ys + e) * zv * sigmoid(zv));
        }
}

extern "C" void gate_backward(int rows, int E, const float* y, int ys, const float* z, int zs, const float* g,
                              float* gy, float* gz, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < rows; r++)
        for (int e = 0; e < E; e += V) {
            v8 zv = ld(z + (size_t)r * zs + e), sg = sigmoid(zv), gv = ld(g + (size_t)r * E + e);
            st(gy + (size_t)r * E + e, gv * zv * sg);
            st(gz + (size_t)r * E + e, gv * ld(y + (size_t)r * ys + e) * sg * (1.f + zv * (1.f - sg)));
        }
}
