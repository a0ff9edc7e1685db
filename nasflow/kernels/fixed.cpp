// Lava's bit-accurate fixed-point LIF (lava.proc.lif.models.AbstractPyLifModelFixed, as exporters.lava.models runs
// it) over T steps: the time loop of exporters.lava.emulate (lava-emu), integer for integer with its numpy fallback
// (exporters.lava.emulate.lif_fixed_step). Lava's int32 arithmetic is reproduced on int64 with explicit wraps.
#include "common.h"

namespace nasflow_kernels {

namespace {

constexpr int64_t kUvMax = int64_t(1) << 23;

inline int64_t wrap32(int64_t x) {
  return ((x + (int64_t(1) << 31)) & ((int64_t(1) << 32) - 1)) - (int64_t(1) << 31);
}

// One block [lo, hi) of neurons over T steps on int32 state. Cloned for AVX2 (chosen at load time when the CPU has
// it) and the baseline ISA: the double <-> int32 conversions and int32 selects vectorise well only with AVX2.
__attribute__((target_clones("avx2", "default")))
void lif_steps(int32_t *__restrict__ uq, int32_t *__restrict__ vq, const int32_t *__restrict__ bq,
               const uint32_t *__restrict__ pa, float *__restrict__ ps, int32_t *__restrict__ pr, int64_t T,
               int64_t M, int64_t lo, int64_t hi, double cu, double cv, int32_t um, int32_t lo_v, int32_t hi_v,
               int32_t th) {
  for (int64_t t = 0; t < T; ++t) {
    const uint32_t *__restrict__ at = pa + t * M;
    float *__restrict__ st = ps + t * M;
    int32_t *__restrict__ rt = pr + t * M;
    for (int64_t m = lo; m < hi; ++m) {
      const int32_t dec_u = static_cast<int32_t>(double(uq[m]) * cu);
      const int32_t cur = static_cast<int32_t>(static_cast<uint32_t>(dec_u) + (at[m] << 6));
      const int32_t w1 = cur > um ? cur - 2 * um : cur;
      const int32_t uu = w1 <= -um ? cur + 2 * um : w1;
      uq[m] = uu;
      const int32_t dec_v = static_cast<int32_t>(double(vq[m]) * cv);
      int32_t volt = static_cast<int32_t>(static_cast<uint32_t>(dec_v) + static_cast<uint32_t>(uu) +
                                          static_cast<uint32_t>(bq[m]));
      volt = volt < lo_v ? lo_v : (volt > hi_v ? hi_v : volt);
      const int32_t fired = volt > th;
      const int32_t vn = fired ? 0 : volt;
      vq[m] = vn;
      st[m] = static_cast<float>(fired);
      rt[m] = vn;
    }
  }
}

// One sample of spike_conv (see there); cloned for AVX2 like lif_steps.
__attribute__((target_clones("avx2", "default")))
void spike_conv_sample(const float *__restrict__ px, const float *__restrict__ pw, float *__restrict__ po, int64_t C,
                       int64_t H, int64_t W, int64_t cg, int64_t kh, int64_t kw, int64_t og, int64_t O, int64_t Ho,
                       int64_t Wo, int64_t sh, int64_t sw, int64_t ph, int64_t pwd, int64_t dh, int64_t dw) {
  for (int64_t c = 0; c < C; ++c) {
    const int64_t g = c / cg;
    const float *plane = px + c * H * W;
    for (int64_t y = 0; y < H; ++y) {
      for (int64_t xx = 0; xx < W; ++xx) {
        if (plane[y * W + xx] == 0.0f) continue;
        for (int64_t ky = 0; ky < kh; ++ky) {
          const int64_t ny = y + ph - ky * dh;
          if (ny < 0 || ny % sh != 0 || ny / sh >= Ho) continue;
          for (int64_t kx = 0; kx < kw; ++kx) {
            const int64_t nx = xx + pwd - kx * dw;
            if (nx < 0 || nx % sw != 0 || nx / sw >= Wo) continue;
            float *__restrict__ dst = po + ((ny / sh) * Wo + nx / sw) * O + g * og;
            const float *__restrict__ src = pw + ((c * kh + ky) * kw + kx) * og;
            for (int64_t o = 0; o < og; ++o) dst[o] += src[o];
          }
        }
      }
    }
  }
}

}  // namespace

std::vector<torch::Tensor> lava_lif_fixed(std::vector<torch::Tensor> inputs, std::vector<int64_t> exps,
                                          std::vector<int64_t> modes, std::vector<int64_t> delays, torch::Tensor u,
                                          torch::Tensor v, int64_t du, int64_t dv, torch::Tensor bias,
                                          int64_t vth_eff, int64_t steps) {
  // inputs: per incoming connection, its values over [T, B, N] (contiguous): mode 0 a Dense accumulation and
  // mode 1 a Conv accumulation (float32/float64 holding exact integers: rounded, shifted by exps[k], then cast to
  // int32 (Dense) or wrapped to 24 bits (Conv), as exporters.lava.models does), mode 2 int64 values already
  // processed; delays[k] = 1 reads step t − 1 (0 at t = 0: Lava's buffered connections). u, v [B, N] int64,
  // updated in place; bias [N] int64 (bias_mant << bias_exp); du without Lava's offset of 1.
  // Returns spikes [T, B, N] float32 and v after reset [T, B, N] int32.
  const int64_t K = static_cast<int64_t>(inputs.size());
  TORCH_CHECK(static_cast<int64_t>(exps.size()) == K && static_cast<int64_t>(modes.size()) == K &&
                  static_cast<int64_t>(delays.size()) == K, "one exp, mode and delay per input");
  TORCH_CHECK(u.scalar_type() == torch::kInt64 && v.scalar_type() == torch::kInt64, "u, v must be int64");
  TORCH_CHECK(u.is_contiguous() && v.is_contiguous() && u.dim() == 2, "u, v must be contiguous [B, N]");
  const int64_t T = steps, B = u.size(0), N = u.size(1), M = B * N;
  TORCH_CHECK(v.numel() == M && bias.numel() == N, "v [B, N] and bias [N] expected");
  std::vector<torch::Tensor> held;
  std::vector<const float *> pf(K, nullptr);
  std::vector<const double *> pd(K, nullptr);
  std::vector<const int64_t *> pi(K, nullptr);
  for (int64_t k = 0; k < K; ++k) {
    auto x = inputs[k].contiguous();
    TORCH_CHECK(x.numel() == T * M, "input ", k, " has ", x.numel(), " values, expected T·B·N = ", T * M);
    held.push_back(x);
    if (x.scalar_type() == torch::kFloat32) {
      pf[k] = x.data_ptr<float>();
    } else if (x.scalar_type() == torch::kFloat64) {
      pd[k] = x.data_ptr<double>();
    } else {
      TORCH_CHECK(x.scalar_type() == torch::kInt64 && modes[k] == 2, "int64 inputs must be mode 2");
      pi[k] = x.data_ptr<int64_t>();
    }
  }
  auto b = bias.to(torch::kInt32).contiguous();
  auto spikes = torch::empty({T, B, N}, u.options().dtype(torch::kFloat32));
  auto vrec = torch::empty({T, B, N}, u.options().dtype(torch::kInt32));
  // Lava adds its int32 inputs with int32 wrap-around: accumulate the low 32 bits (uint32 addition is exact mod 2^32).
  std::vector<uint32_t> a_in(static_cast<size_t>(T * M), 0u);
  uint32_t *pa = a_in.data();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t off = delays[k] * M, count = T * M - off, e = exps[k];
    if (count <= 0) continue;
    uint32_t *dst = pa + off;
    const float *xf = pf[k];
    const double *xd = pd[k];
    const int64_t *xi = pi[k];
    const bool conv = modes[k] == 1;
    // The accumulations are exact integers held in floating point (the caller's bound keeps them below 2^53).
    auto post = [e, conv](int64_t acc) -> uint32_t {
      acc = e >= 0 ? acc * (int64_t(1) << e) : (acc >> (-e));
      return static_cast<uint32_t>(conv ? (((acc + kUvMax) & (2 * kUvMax - 1)) - kUvMax) : acc);
    };
    if (xi != nullptr) {
      for (int64_t i = 0; i < count; ++i) dst[i] += static_cast<uint32_t>(xi[i]);
    } else if (xf != nullptr) {
      for (int64_t i = 0; i < count; ++i) dst[i] += post(static_cast<int64_t>(xf[i]));
    } else {
      for (int64_t i = 0; i < count; ++i) dst[i] += post(static_cast<int64_t>(xd[i]));
    }
  }
  // The LIF time loop on Lava's int32 state, steps outside and neurons inside, branch-free so that it vectorises.
  // The decay sign(p)·(|p| >> 12) of p = x·(4096 − d) is trunc(p / 4096), exact in double (|p| < 2^44).
  const double ku = double(4096 - (du + 1)) / 4096.0, kv = double(4096 - dv) / 4096.0;
  const int32_t umax = int32_t(kUvMax), vlo = -umax + 1, vhi = umax - 1, vth = int32_t(vth_eff);
  int64_t *pu = u.data_ptr<int64_t>(), *pv = v.data_ptr<int64_t>();
  const int32_t *pb = b.data_ptr<int32_t>();
  std::vector<int32_t> us(static_cast<size_t>(M)), vs(static_cast<size_t>(M)), bs(static_cast<size_t>(M));
  for (int64_t m = 0; m < M; ++m) {
    us[m] = static_cast<int32_t>(pu[m]);
    vs[m] = static_cast<int32_t>(pv[m]);
    bs[m] = pb[m % N];
  }
  int32_t *u32 = us.data(), *v32 = vs.data();
  const int32_t *bias_m = bs.data();
  float *ps = spikes.data_ptr<float>();
  int32_t *pr = vrec.data_ptr<int32_t>();
  at::parallel_for(0, M, kGrain, [&](int64_t lo, int64_t hi) {
    lif_steps(u32, v32, bias_m, pa, ps, pr, T, M, lo, hi, ku, kv, umax, vlo, vhi, vth);
  });
  for (int64_t m = 0; m < M; ++m) {
    pu[m] = u32[m];
    pv[m] = v32[m];
  }
  return {spikes, vrec};
}

torch::Tensor spike_conv(torch::Tensor x, torch::Tensor wt, int64_t out_channels, int64_t sh, int64_t sw,
                         int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups) {
  // Event-driven cross-correlation of binary spikes x [N, C, H, W] (float32 0/1) with weights pre-arranged as
  // wt [groups, C/groups, kh, kw, O/groups] (float32): every spike adds its weight column to the outputs it
  // reaches, so the cost follows the spike count, not the map size. Equal to torch's conv2d (same geometry) while
  // the sums stay exact in float32 (the caller checks the bound). Returns [N, O, Ho, Wo] float32.
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat32, "x must be float32 [N, C, H, W]");
  TORCH_CHECK(wt.dim() == 5 && wt.scalar_type() == torch::kFloat32, "wt must be float32 [g, C/g, kh, kw, O/g]");
  auto xin = x.contiguous();
  auto w = wt.contiguous();
  const int64_t N = xin.size(0), C = xin.size(1), H = xin.size(2), W = xin.size(3);
  const int64_t cg = w.size(1), kh = w.size(2), kw = w.size(3), og = w.size(4), O = out_channels;
  TORCH_CHECK(w.size(0) == groups && cg * groups == C && og * groups == O, "weight layout does not match x");
  const int64_t Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1, Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  auto out = torch::zeros({N, Ho, Wo, O}, xin.options());
  const float *px = xin.data_ptr<float>(), *pw_ = w.data_ptr<float>();
  float *po = out.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t n = lo; n < hi; ++n) {
      spike_conv_sample(px + n * C * H * W, pw_, po + n * Ho * Wo * O, C, H, W, cg, kh, kw, og, O, Ho, Wo, sh, sw,
                        ph, pw, dh, dw);
    }
  });
  return out.permute({0, 3, 1, 2}).contiguous();
}

}  // namespace nasflow_kernels
