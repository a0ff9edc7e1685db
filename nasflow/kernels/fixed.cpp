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

inline int64_t decay(int64_t x, int64_t d) {  // sign(x·(4096 − d)) · (|x·(4096 − d)| >> 12)
  const int64_t p = x * (4096 - d);
  return p < 0 ? -((-p) >> 12) : (p >> 12);
}

}  // namespace

std::vector<torch::Tensor> lava_lif_fixed(torch::Tensor a_in, torch::Tensor u, torch::Tensor v, int64_t du,
                                          int64_t dv, torch::Tensor bias, int64_t vth_eff) {
  // a_in [T, B, N] int64 (the int32 sums of the incoming connections); u, v [B, N] int64, updated in place;
  // bias [N] int64 (bias_mant << bias_exp); du without Lava's offset of 1. Returns spikes [T, B, N] (bool) and
  // v after reset [T, B, N] (int64).
  TORCH_CHECK(a_in.dim() == 3 && a_in.scalar_type() == torch::kInt64, "a_in must be int64 [T, B, N]");
  TORCH_CHECK(u.scalar_type() == torch::kInt64 && v.scalar_type() == torch::kInt64, "u, v must be int64");
  TORCH_CHECK(u.is_contiguous() && v.is_contiguous(), "u, v must be contiguous");
  const int64_t T = a_in.size(0), B = a_in.size(1), N = a_in.size(2);
  TORCH_CHECK(u.numel() == B * N && v.numel() == B * N && bias.numel() == N, "u, v [B, N] and bias [N] expected");
  auto a = a_in.contiguous();
  auto b = bias.to(torch::kInt64).contiguous();
  auto spikes = torch::empty({T, B, N}, a.options().dtype(torch::kBool));
  auto vrec = torch::empty({T, B, N}, a.options());
  const int64_t *pa = a.data_ptr<int64_t>(), *pb = b.data_ptr<int64_t>();
  int64_t *pu = u.data_ptr<int64_t>(), *pv = v.data_ptr<int64_t>(), *pr = vrec.data_ptr<int64_t>();
  bool *ps = spikes.data_ptr<bool>();
  const int64_t M = B * N, du_eff = du + 1;
  at::parallel_for(0, M, kGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t m = lo; m < hi; ++m) {
      int64_t uu = pu[m], vv = pv[m];
      const int64_t bias_m = pb[m % N];
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = t * M + m;
        const int64_t cur = wrap32(decay(uu, du_eff) + wrap32(pa[i] * 64));
        int64_t w = cur > kUvMax ? cur - 2 * kUvMax : cur;
        if (w <= -kUvMax) w = cur + 2 * kUvMax;
        uu = w;
        int64_t volt = wrap32(decay(vv, dv) + uu + bias_m);
        volt = volt < -kUvMax + 1 ? -kUvMax + 1 : (volt > kUvMax - 1 ? kUvMax - 1 : volt);
        const bool s = volt > vth_eff;
        vv = s ? 0 : volt;
        ps[i] = s;
        pr[i] = vv;
      }
      pu[m] = uu;
      pv[m] = vv;
    }
  });
  return {spikes, vrec};
}

}  // namespace nasflow_kernels
