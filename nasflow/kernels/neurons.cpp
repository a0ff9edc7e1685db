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

// The loops are templated on every flag, so the inner loop over neurons has no branch on a setting and the compiler
// can vectorise it; each thread owns a block of neurons and walks time over it (contiguous rows of [T, N]).
template <typename T, bool LERP, bool STRICT, bool SOFT>
void forward_block(const T *px, const T *pv0, T *ps, T *ph, T *pv, int64_t steps, int64_t n, int64_t lo, int64_t hi,
                   T K, T B, T VL, T TH, T VR) {
  const int64_t len = hi - lo;
  std::vector<T> v(pv0 + lo, pv0 + hi);
  T *vp = v.data();
  const bool add_leak = K != T(0) && VL != T(0);
  for (int64_t t = 0; t < steps; ++t) {
    const T *xt = px + t * n + lo;
    T *st = ps + t * n + lo;
    T *ht = ph ? ph + t * n + lo : nullptr;
    for (int64_t j = 0; j < len; ++j) {
      T h;
      if (LERP) {
        h = lerp_like_torch(vp[j], xt[j], K);
      } else {
        h = vp[j] * (T(1) - K);
        h = h + B * xt[j];
        if (add_leak) h = h + K * VL;
      }
      const bool m = STRICT ? (h > TH) : (h >= TH);
      st[j] = m ? T(1) : T(0);
      if (ht) ht[j] = h;
      vp[j] = m ? (SOFT ? h - TH : VR) : h;
    }
  }
  std::copy(v.begin(), v.end(), pv + lo);
}

#define NASFLOW_FWD(L, S, R) forward_block<T, L, S, R>(px, pv0, ps, ph, pv, steps, n, lo, hi, K, B, VL, TH, VR)
template <typename T>
void forward_dispatch(bool lerp, bool strict, bool soft, const T *px, const T *pv0, T *ps, T *ph, T *pv,
                      int64_t steps, int64_t n, int64_t lo, int64_t hi, T K, T B, T VL, T TH, T VR) {
  if (lerp) {
    if (strict) { if (soft) NASFLOW_FWD(true, true, true); else NASFLOW_FWD(true, true, false); }
    else { if (soft) NASFLOW_FWD(true, false, true); else NASFLOW_FWD(true, false, false); }
  } else {
    if (strict) { if (soft) NASFLOW_FWD(false, true, true); else NASFLOW_FWD(false, true, false); }
    else { if (soft) NASFLOW_FWD(false, false, true); else NASFLOW_FWD(false, false, false); }
  }
}
#undef NASFLOW_FWD

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
    using T = scalar_t;
    const T *px = x.data_ptr<T>(), *pv0 = v0.data_ptr<T>();
    T *ps = spikes.data_ptr<T>(), *pv = v_last.data_ptr<T>();
    T *ph = save_h ? h_seq.data_ptr<T>() : nullptr;
    const T K = k, B = b, VL = vl, TH = th, VR = vr;
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      forward_dispatch<T>(lerp, strict, soft, px, pv0, ps, ph, pv, steps, n, lo, hi, K, B, VL, TH, VR);
    });
  });
  return {spikes, h_seq, v_last};
}

template <typename T, int SUR, bool STRICT, bool SOFT, bool DETACH, bool NEED_K, bool DI>
double backward_block(const T *pg, const T *ph, const T *pv0, const T *pgv, T *pgx, T *pgv0, int64_t steps, int64_t n,
                      int64_t lo, int64_t hi, T K, T B, T VL, T TH, T VR, T P) {
  const int64_t len = hi - lo;
  std::vector<T> gv(len, T(0));
  if (pgv) std::copy(pgv + lo, pgv + hi, gv.begin());
  T scale = T(1);
  bool have = pgv != nullptr;
  double acc = 0.0;
  T *g = gv.data();
  for (int64_t t = steps - 1; t >= 0; --t) {
    const T *ht = ph + t * n + lo, *gt = pg + t * n + lo;
    const T *hp = t > 0 ? ph + (t - 1) * n + lo : nullptr;
    T *gxt = pgx + t * n + lo;
    const T sc = have ? scale : T(0);
    for (int64_t j = 0; j < len; ++j) {
      const T h = ht[j];
      const bool m = STRICT ? (h > TH) : (h >= TH);
      const T sg = surrogate<T>(SUR, h - TH, P);
      T dv_dh;
      if (SOFT) dv_dh = DETACH ? T(1) : T(1) - TH * sg;
      else dv_dh = DETACH ? (m ? T(0) : T(1)) : (m ? T(0) : T(1)) + (VR - h) * sg;
      const T gh = gt[j] * sg + sc * g[j] * dv_dh;
      gxt[j] = gh * B;
      if (NEED_K) {
        T v_prev;
        if (hp) {
          const T q = hp[j];
          const bool mp = STRICT ? (q > TH) : (q >= TH);
          v_prev = mp ? (SOFT ? q - TH : VR) : q;
        } else {
          v_prev = pv0[lo + j];
        }
        acc += DI ? double(gh) * (double(h) - double(v_prev)) / double(K) : double(gh) * (double(VL) - double(v_prev));
      }
      g[j] = gh;
    }
    scale = T(1) - K;
    have = true;
  }
  for (int64_t j = 0; j < len; ++j) pgv0[lo + j] = have ? g[j] * scale : T(0);
  return acc;
}

template <typename T, int SUR>
double backward_dispatch(bool strict, bool soft, bool detach, bool need_k, bool di, const T *pg, const T *ph,
                         const T *pv0, const T *pgv, T *pgx, T *pgv0, int64_t steps, int64_t n, int64_t lo,
                         int64_t hi, T K, T B, T VL, T TH, T VR, T P) {
#define NASFLOW_BWD(S, R, D, NK, DI_) \
  return backward_block<T, SUR, S, R, D, NK, DI_>(pg, ph, pv0, pgv, pgx, pgv0, steps, n, lo, hi, K, B, VL, TH, VR, P)
#define NASFLOW_BWD_K(S, R, D) \
  if (!need_k) { NASFLOW_BWD(S, R, D, false, false); } \
  else if (di) { NASFLOW_BWD(S, R, D, true, true); } \
  else { NASFLOW_BWD(S, R, D, true, false); }
#define NASFLOW_BWD_D(S, R) if (detach) { NASFLOW_BWD_K(S, R, true) } else { NASFLOW_BWD_K(S, R, false) }
#define NASFLOW_BWD_R(S) if (soft) { NASFLOW_BWD_D(S, true) } else { NASFLOW_BWD_D(S, false) }
  if (strict) { NASFLOW_BWD_R(true) } else { NASFLOW_BWD_R(false) }
#undef NASFLOW_BWD_R
#undef NASFLOW_BWD_D
#undef NASFLOW_BWD_K
#undef NASFLOW_BWD
}

template <typename T>
double backward_surrogate(int64_t sur, bool strict, bool soft, bool detach, bool need_k, bool di, const T *pg,
                          const T *ph, const T *pv0, const T *pgv, T *pgx, T *pgv0, int64_t steps, int64_t n,
                          int64_t lo, int64_t hi, T K, T B, T VL, T TH, T VR, T P) {
  switch (sur) {
    case 0: return backward_dispatch<T, 0>(strict, soft, detach, need_k, di, pg, ph, pv0, pgv, pgx, pgv0, steps, n,
                                           lo, hi, K, B, VL, TH, VR, P);
    case 1: return backward_dispatch<T, 1>(strict, soft, detach, need_k, di, pg, ph, pv0, pgv, pgx, pgv0, steps, n,
                                           lo, hi, K, B, VL, TH, VR, P);
    case 2: return backward_dispatch<T, 2>(strict, soft, detach, need_k, di, pg, ph, pv0, pgv, pgx, pgv0, steps, n,
                                           lo, hi, K, B, VL, TH, VR, P);
    case 3: return backward_dispatch<T, 3>(strict, soft, detach, need_k, di, pg, ph, pv0, pgv, pgx, pgv0, steps, n,
                                           lo, hi, K, B, VL, TH, VR, P);
    default: return backward_dispatch<T, 4>(strict, soft, detach, need_k, di, pg, ph, pv0, pgv, pgx, pgv0, steps, n,
                                            lo, hi, K, B, VL, TH, VR, P);
  }
}

// Exact BPTT of lif_forward from the saved H. grad_v_last may be empty. Returns (grad_x [T, N], grad_v0 [N],
// grad_k [] (0 unless need_k)).
std::vector<torch::Tensor> lif_backward(torch::Tensor grad_s, torch::Tensor h_seq, torch::Tensor v0,
                                        torch::Tensor grad_v_last, double k, double b, double vl, double th,
                                        bool soft, double vr, bool strict, bool detach, int64_t sur, double sur_p,
                                        bool decay_input, bool need_k) {
  TORCH_CHECK(h_seq.dim() == 2 && h_seq.is_contiguous() && grad_s.is_contiguous() && grad_s.sizes() == h_seq.sizes(),
              "lif_backward: grad_s and H must be contiguous [T, N] tensors of one shape");
  TORCH_CHECK(sur >= 0 && sur <= 4, "lif_backward: unknown surrogate id ", sur);
  const int64_t steps = h_seq.size(0), n = h_seq.size(1);
  auto grad_x = torch::empty_like(h_seq);
  auto grad_v0 = torch::empty_like(v0);
  const bool has_gv = grad_v_last.defined() && grad_v_last.numel() == n;
  double grad_k = 0.0;
  AT_DISPATCH_FLOATING_TYPES(h_seq.scalar_type(), "lif_backward", [&] {
    using T = scalar_t;
    const T *pg = grad_s.data_ptr<T>(), *ph = h_seq.data_ptr<T>(), *pv0 = v0.data_ptr<T>();
    const T *pgv = has_gv ? grad_v_last.data_ptr<T>() : nullptr;
    T *pgx = grad_x.data_ptr<T>(), *pgv0 = grad_v0.data_ptr<T>();
    const T K = k, B = b, VL = vl, TH = th, VR = vr, P = sur_p;
    const int64_t chunks = std::max<int64_t>(1, (n + kGrain - 1) / kGrain);
    std::vector<double> partial(chunks, 0.0);
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t lo = c * kGrain, hi = std::min(n, lo + kGrain);
        partial[c] = backward_surrogate<T>(sur, strict, soft, detach, need_k, decay_input, pg, ph, pv0, pgv, pgx,
                                           pgv0, steps, n, lo, hi, K, B, VL, TH, VR, P);
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
