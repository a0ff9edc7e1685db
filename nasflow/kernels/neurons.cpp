// nasflow's compiled neuron time loops (CPU): the IF/LIF/PLIF dynamics of nasflow.snn.neurons.LeakyIntegrateSeq,
// forward and exact BPTT backward, one pass over time per block of neurons, parallel over neurons
// (at::parallel_for, so torch.get_num_threads() is respected).
//
//   H[t] = (1 - k)·V[t-1] + b·X[t] + k·v_leak      (decay_input: b = k, computed as lerp(V, X, k) when v_leak = 0)
//   S[t] = H[t] >= th  (or > th, strict)
//   V[t] = H[t] - th·S[t]  (soft reset)  |  H[t]·(1 - S[t]) + v_reset·S[t]  (hard reset)
//
// Every arithmetic step is written in the order of the torch-op loop it replaces, and the file is compiled with
// -ffp-contract=off, so forward values match that loop bit for bit; the backward sums in another order (float
// tolerance). Surrogates: 0 ATan(alpha), 1 Sigmoid(alpha), 2 Triangle(width), 3 SuperSpike(beta), 4 Dspike(b).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

constexpr int64_t kGrain = 2048;

template <typename T>
inline T lerp_like_torch(T self, T end, T w) {
  // ATen's lerp: self + w·(end - self) for |w| < 0.5, else end - (end - self)·(1 - w)
  return (std::abs(w) < T(0.5)) ? self + w * (end - self) : end - (end - self) * (T(1) - w);
}

template <typename T>
inline T charge(T v, T x, T k, T b, T vl, bool lerp) {
  if (lerp) return lerp_like_torch(v, x, k);
  T h = v * (T(1) - k);
  h = h + b * x;
  if (k != T(0) && vl != T(0)) h = h + k * vl;
  return h;
}

template <typename T>
inline bool fires(T h, T th, bool strict) { return strict ? (h > th) : (h >= th); }

template <typename T>
inline T reset(T h, bool m, T th, bool soft, T vr) {
  if (!m) return h;
  return soft ? h - th : vr;
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

// x: [T, N] (contiguous), v0: [N]. Returns (spikes [T, N] in x's dtype, H [T, N] or empty, V[T-1] [N]).
std::vector<torch::Tensor> lif_forward(torch::Tensor x, torch::Tensor v0, double k, double b, double vl, double th,
                                       bool soft, double vr, bool strict, bool save_h) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && v0.is_contiguous() && v0.numel() == x.size(1),
              "lif_forward: x must be a contiguous [T, N] tensor and v0 a contiguous [N] tensor");
  const int64_t steps = x.size(0), n = x.size(1);
  auto spikes = torch::empty_like(x);
  auto h_seq = save_h ? torch::empty_like(x) : torch::empty({0}, x.options());
  auto v_last = torch::empty_like(v0);
  const bool lerp = (b == k) && vl == 0.0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lif_forward", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pv0 = v0.data_ptr<scalar_t>();
    scalar_t *ps = spikes.data_ptr<scalar_t>(), *pv = v_last.data_ptr<scalar_t>();
    scalar_t *ph = save_h ? h_seq.data_ptr<scalar_t>() : nullptr;
    const scalar_t K = k, B = b, VL = vl, TH = th, VR = vr;
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      std::vector<scalar_t> v(pv0 + lo, pv0 + hi);
      for (int64_t t = 0; t < steps; ++t) {
        const scalar_t *xt = px + t * n;
        scalar_t *st = ps + t * n;
        scalar_t *ht = ph ? ph + t * n : nullptr;
        for (int64_t i = lo; i < hi; ++i) {
          scalar_t h = charge(v[i - lo], xt[i], K, B, VL, lerp);
          bool m = fires(h, TH, strict);
          if (ht) ht[i] = h;
          st[i] = m ? scalar_t(1) : scalar_t(0);
          v[i - lo] = reset(h, m, TH, soft, VR);
        }
      }
      std::copy(v.begin(), v.end(), pv + lo);
    });
  });
  return {spikes, h_seq, v_last};
}

// Exact BPTT of lif_forward from the saved H. grad_v_last may be empty. Returns (grad_x [T, N], grad_v0 [N],
// grad_k [] (0 unless need_k)).
std::vector<torch::Tensor> lif_backward(torch::Tensor grad_s, torch::Tensor h_seq, torch::Tensor v0,
                                        torch::Tensor grad_v_last, double k, double b, double vl, double th,
                                        bool soft, double vr, bool strict, bool detach, int64_t sur, double sur_p,
                                        bool decay_input, bool need_k) {
  TORCH_CHECK(h_seq.dim() == 2 && h_seq.is_contiguous() && grad_s.is_contiguous() && grad_s.sizes() == h_seq.sizes(),
              "lif_backward: grad_s and H must be contiguous [T, N] tensors of one shape");
  const int64_t steps = h_seq.size(0), n = h_seq.size(1);
  auto grad_x = torch::empty_like(h_seq);
  auto grad_v0 = torch::empty_like(v0);
  const bool has_gv = grad_v_last.defined() && grad_v_last.numel() == n;
  double grad_k = 0.0;
  AT_DISPATCH_FLOATING_TYPES(h_seq.scalar_type(), "lif_backward", [&] {
    const scalar_t *pg = grad_s.data_ptr<scalar_t>(), *ph = h_seq.data_ptr<scalar_t>();
    const scalar_t *pv0 = v0.data_ptr<scalar_t>();
    const scalar_t *pgv = has_gv ? grad_v_last.data_ptr<scalar_t>() : nullptr;
    scalar_t *pgx = grad_x.data_ptr<scalar_t>(), *pgv0 = grad_v0.data_ptr<scalar_t>();
    const scalar_t K = k, B = b, VL = vl, TH = th, VR = vr, P = sur_p;
    const int64_t chunks = std::max<int64_t>(1, (n + kGrain - 1) / kGrain);
    std::vector<double> partial(chunks, 0.0);
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t lo = c * kGrain, hi = std::min(n, lo + kGrain);
        double acc = 0.0;
        for (int64_t i = lo; i < hi; ++i) {
          scalar_t gv = pgv ? pgv[i] : scalar_t(0);  // dL/dV[t] / scale
          scalar_t scale = scalar_t(1);
          bool have = pgv != nullptr;
          for (int64_t t = steps - 1; t >= 0; --t) {
            const scalar_t h = ph[t * n + i];
            const bool m = fires(h, TH, strict);
            const scalar_t g = surrogate<scalar_t>(static_cast<int>(sur), h - TH, P);
            scalar_t gh = pg[t * n + i] * g;
            if (have) {
              scalar_t dv_dh;
              if (soft) dv_dh = detach ? scalar_t(1) : scalar_t(1) - TH * g;
              else dv_dh = detach ? (m ? scalar_t(0) : scalar_t(1)) : (m ? scalar_t(0) : scalar_t(1)) + (VR - h) * g;
              gh = gh + scale * gv * dv_dh;
            }
            pgx[t * n + i] = gh * B;
            if (need_k) {
              scalar_t v_prev;
              if (t == 0) v_prev = pv0[i];
              else {
                const scalar_t hp = ph[(t - 1) * n + i];
                v_prev = reset(hp, fires(hp, TH, strict), TH, soft, VR);
              }
              acc += decay_input ? double(gh) * (double(h) - double(v_prev)) / double(K)
                                 : double(gh) * (double(VL) - double(v_prev));
            }
            gv = gh;
            scale = scalar_t(1) - K;
            have = true;
          }
          pgv0[i] = have ? gv * scale : scalar_t(0);
        }
        partial[c] = acc;
      }
    });
    for (double p : partial) grad_k += p;
  });
  return {grad_x, grad_v0, torch::scalar_tensor(grad_k, h_seq.options())};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lif_forward", &lif_forward, "IF/LIF/PLIF time loop, forward");
  m.def("lif_backward", &lif_backward, "IF/LIF/PLIF time loop, exact BPTT");
}
