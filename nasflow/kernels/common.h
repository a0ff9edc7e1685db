// Shared by nasflow's kernel sources (neurons.cpp, adaptive.cpp, fixed.cpp): the surrogate derivatives, the firing test and the
// signatures of the ALIF/CUBA loops that neurons.cpp binds.
#pragma once
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace nasflow_kernels {


constexpr int64_t kGrain = 2048;

template <typename T>
inline T lerp_like_torch(T self, T end, T w) {
  // ATen's lerp: self + w·(end - self) for |w| < 0.5, else end - (end - self)·(1 - w)
  return (std::abs(w) < T(0.5)) ? self + w * (end - self) : end - (end - self) * (T(1) - w);
}

template <typename T>
inline T surrogate(int kind, T x, T p) {
  switch (kind) {
    case 0: {  // ATan: (alpha/2) / (1 + (pi/2·alpha·x)^2)
      T c = T(M_PI / 2) * p * x;
      return (p / T(2)) / (T(1) + c * c);
    }
    case 1: {  // Sigmoid: alpha·s·(1 - s), s = sigmoid(alpha·x)
      T s = T(1) / (T(1) + std::exp(-p * x));
      return p * s * (T(1) - s);
    }
    case 2: {  // Triangle: max(0, 1 - |x|/w) / w
      T v = T(1) - std::abs(x) / p;
      return (v > T(0) ? v : T(0)) / p;
    }
    case 3: {  // SuperSpike: 1 / (1 + beta·|x|)^2
      T d = T(1) + p * std::abs(x);
      return T(1) / (d * d);
    }
    default: {  // Dspike: [|x| < 0.5]·b/(2 tanh(b/2))·(1 - tanh²(b·x))
      if (!(std::abs(x) < T(0.5))) return T(0);
      T t = std::tanh(p * x);
      return p / (T(2) * std::tanh(p / T(2))) * (T(1) - t * t);
    }
  }
}

template <typename T>
inline bool fires_z(T z, bool strict) { return strict ? (z > T(0)) : (z >= T(0)); }

std::vector<torch::Tensor> alif_forward(torch::Tensor x, torch::Tensor v0, torch::Tensor a0, torch::Tensor s0,
                                        std::vector<double> ks, std::vector<double> bs, std::vector<double> betas,
                                        std::vector<double> rhos, double vl, double th, bool soft, double vr,
                                        bool strict, bool save_h);
std::vector<torch::Tensor> alif_backward(torch::Tensor grad_s, torch::Tensor h_seq, torch::Tensor a0, torch::Tensor s0,
                                         torch::Tensor grad_v_last, torch::Tensor grad_a_last,
                                         torch::Tensor grad_s_last, std::vector<double> ks, std::vector<double> bs,
                                         std::vector<double> betas, std::vector<double> rhos, double th, bool soft,
                                         double vr, bool strict, bool detach, int64_t sur, double sur_p);
std::vector<torch::Tensor> cuba_forward(torch::Tensor x, torch::Tensor v0, torch::Tensor u0, double omdu, double omdv,
                                        double bias, double th, bool soft, double vr, bool strict, bool save_h);
std::vector<torch::Tensor> cuba_backward(torch::Tensor grad_s, torch::Tensor h_seq, torch::Tensor grad_v_last,
                                         torch::Tensor grad_u_last, double omdu, double omdv, double th, bool soft,
                                         double vr, bool strict, bool detach, int64_t sur, double sur_p);
std::vector<torch::Tensor> lava_lif_fixed(std::vector<torch::Tensor> inputs, std::vector<int64_t> exps,
                                          std::vector<int64_t> modes, std::vector<int64_t> delays, torch::Tensor u,
                                          torch::Tensor v, int64_t du, int64_t dv, torch::Tensor bias,
                                          int64_t vth_eff, int64_t steps);
torch::Tensor spike_conv(torch::Tensor x, torch::Tensor wt, int64_t out_channels, int64_t sh, int64_t sw,
                         int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups);

}  // namespace nasflow_kernels
