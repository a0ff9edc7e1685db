// nasflow's compiled neuron time loops (CPU): IF/LIF/PLIF (nasflow.snn.neurons.LeakyIntegrateSeq and the step
// loop's charge), ALIF and CUBA, forward and exact BPTT backward, one pass over time per block of neurons, parallel
// over neurons (at::parallel_for, so torch.get_num_threads() is respected). IF/LIF/PLIF and ALIF take a leading
// candidate axis: G settings of (k, b) or (k, b, beta, rho) run on one shared input (TPS's batched pass) and give
// [G, T, N] outputs without copying the input G times.
//
//   H[t] = (1 - k)·V[t-1] + b·X[t] + k·v_leak      (decay_input: b = k, computed as lerp(V, X, k) when v_leak = 0;
//                                                    the step loop's form: V - (V - v_leak)·k + b·X)
//   S[t] = H[t] >= th  (or > th, strict)
//   V[t] = H[t] - th·S[t]  (soft reset)  |  H[t]·(1 - S[t]) + v_reset·S[t]  (hard reset)
//
// Every arithmetic step is written in the order of the torch-op loop it replaces, and the file is compiled with
// -ffp-contract=off, so forward values match that loop bit for bit; the backward sums in another order (float
// tolerance). Surrogates: 0 ATan(alpha), 1 Sigmoid(alpha), 2 Triangle(width), 3 SuperSpike(beta), 4 Dspike(b).
#include "common.h"

namespace nasflow_kernels {
// The loops are templated on every flag, so the inner loop over neurons has no branch on a setting and the compiler
// can vectorise it; each thread owns a block of neurons and walks time over it (contiguous rows of [T, N]).
// CH is the charge's arithmetic: 0 lerp, 1 (1-k)·V + b·X (+ k·v_leak), 2 the step loop's V - (V - v_leak)·k + b·X.
template <typename T, int CH, bool STRICT, bool SOFT, bool SAVE, bool SPK>
void forward_block(const T *__restrict__ px, const T *__restrict__ pv0, T *__restrict__ ps, T *__restrict__ ph,
                   T *__restrict__ pv, int64_t steps, int64_t n, int64_t lo, int64_t hi, T K, T OMK, T B, T VL, T TH,
                   T VR) {
  const int64_t len = hi - lo;
  std::vector<T> v(pv0 + lo, pv0 + hi);
  T *__restrict__ vp = v.data();
  const bool add_leak = K != T(0) && VL != T(0);
  const T KVL = add_leak ? K * VL : T(0);
  // ATen's lerp picks its formula from |w| < 0.5; both are computed and one selected, so the loop vectorises.
  const bool small = std::abs(K) < T(0.5);
  const T omk_lerp = T(1) - K;
  for (int64_t t = 0; t < steps; ++t) {
    const T *__restrict__ xt = px + t * n + lo;
    T *__restrict__ st = SPK ? ps + t * n + lo : nullptr;
    T *__restrict__ ht = SAVE ? ph + t * n + lo : nullptr;
    for (int64_t j = 0; j < len; ++j) {
      const T vj = vp[j], xj = xt[j];
      T h;
      if (CH == 0) {
        const T d = xj - vj;
        const T lo_w = vj + K * d, hi_w = xj - d * omk_lerp;
        h = small ? lo_w : hi_w;
      } else if (CH == 1) {
        h = vj * OMK;
        h = h + B * xj;
        const T hl = h + KVL;
        h = add_leak ? hl : h;
      } else {
        const T leak = (vj - VL) * K;
        h = vj - leak;
        h = h + B * xj;
      }
      const bool m = STRICT ? (h > TH) : (h >= TH);
      if (SPK) st[j] = m ? T(1) : T(0);
      vp[j] = m ? (SOFT ? h - TH : VR) : h;
      if (SAVE) ht[j] = h;
    }
  }
  std::copy(v.begin(), v.end(), pv + lo);
}

#define NASFLOW_FWD(C, S, R)                                                                                       \
  if (!ps) return forward_block<T, C, S, R, true, false>(px, pv0, ps, ph, pv, steps, n, lo, hi, K, OMK, B, VL, TH, VR); \
  if (ph) return forward_block<T, C, S, R, true, true>(px, pv0, ps, ph, pv, steps, n, lo, hi, K, OMK, B, VL, TH, VR); \
  return forward_block<T, C, S, R, false, true>(px, pv0, ps, ph, pv, steps, n, lo, hi, K, OMK, B, VL, TH, VR)
#define NASFLOW_FWD_S(C) \
  if (strict) { if (soft) { NASFLOW_FWD(C, true, true); } NASFLOW_FWD(C, true, false); } \
  if (soft) { NASFLOW_FWD(C, false, true); } NASFLOW_FWD(C, false, false);
template <typename T>
void forward_dispatch(int form, bool strict, bool soft, const T *px, const T *pv0, T *ps, T *ph, T *pv,
                      int64_t steps, int64_t n, int64_t lo, int64_t hi, T K, T OMK, T B, T VL, T TH, T VR) {
  if (form == 0) { NASFLOW_FWD_S(0) }
  if (form == 1) { NASFLOW_FWD_S(1) }
  NASFLOW_FWD_S(2)
}
#undef NASFLOW_FWD_S
#undef NASFLOW_FWD

// x: [T, N] (contiguous, shared by the G candidates), v0: [N]; ks/omks/bs: the candidates' k, 1 - k (computed by the
// caller as the torch loop does) and b. step_form: the step loop's charge. Returns (spikes [G, T, N] in x's dtype, or
// empty when only H is wanted (!want_spikes, which needs save_h), H [G, T, N] or empty, V[T-1] [G, N]).
std::vector<torch::Tensor> lif_forward(torch::Tensor x, torch::Tensor v0, std::vector<double> ks,
                                       std::vector<double> omks, std::vector<double> bs, double vl, double th,
                                       bool soft, double vr, bool strict, bool save_h, bool step_form,
                                       bool want_spikes) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && v0.is_contiguous() && v0.numel() == x.size(1),
              "lif_forward: x must be a contiguous [T, N] tensor and v0 a contiguous [N] tensor");
  const int64_t G = static_cast<int64_t>(ks.size());
  TORCH_CHECK(G >= 1 && omks.size() == ks.size() && bs.size() == ks.size(),
              "lif_forward: give one k, 1 - k and b per candidate");
  const int64_t steps = x.size(0), n = x.size(1);
  TORCH_CHECK(want_spikes || save_h, "lif_forward: asked for neither spikes nor H");
  auto spikes = want_spikes ? torch::empty({G, steps, n}, x.options()) : torch::empty({0}, x.options());
  auto h_seq = save_h ? torch::empty({G, steps, n}, x.options()) : torch::empty({0}, x.options());
  auto v_last = torch::empty({G, n}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lif_forward", [&] {
    using T = scalar_t;
    const T *px = x.data_ptr<T>(), *pv0 = v0.data_ptr<T>();
    T *ps = want_spikes ? spikes.data_ptr<T>() : nullptr, *pv = v_last.data_ptr<T>();
    T *ph = save_h ? h_seq.data_ptr<T>() : nullptr;
    const T VL = vl, TH = th, VR = vr;
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t g = 0; g < G; ++g) {
        const T K = ks[g], OMK = omks[g], B = bs[g];
        const int form = step_form ? 2 : ((bs[g] == ks[g] && vl == 0.0) ? 0 : 1);
        forward_dispatch<T>(form, strict, soft, px, pv0, ps ? ps + g * steps * n : nullptr,
                            ph ? ph + g * steps * n : nullptr,
                            pv + g * n, steps, n, lo, hi, K, OMK, B, VL, TH, VR);
      }
    });
  });
  return {spikes, h_seq, v_last};
}

template <typename T, int SUR, bool STRICT, bool SOFT, bool DETACH, bool NEED_K, bool DI>
double backward_block(const T *__restrict__ pg, const T *__restrict__ ph, const T *__restrict__ pv0,
                      const T *__restrict__ pgv, T *__restrict__ pgx, T *__restrict__ pgv0, int64_t steps, int64_t n,
                      int64_t lo, int64_t hi, T K, T B, T VL, T TH, T VR, T P) {
  const int64_t len = hi - lo;
  std::vector<T> gv(len, T(0));
  if (pgv) std::copy(pgv + lo, pgv + hi, gv.begin());
  std::vector<double> acc(NEED_K ? len : 0, 0.0);  // per neuron, so the loop needs no cross-lane reduction
  double *__restrict__ ap = acc.data();
  T scale = T(1);
  bool have = pgv != nullptr;
  T *__restrict__ g = gv.data();
  for (int64_t t = steps - 1; t >= 0; --t) {
    const T *__restrict__ ht = ph + t * n + lo;
    const T *__restrict__ gt = pg + t * n + lo;
    const bool from_h = t > 0;  // V[t-1] from H[t-1], or V0 at t = 0
    const T *__restrict__ vsrc = from_h ? ph + (t - 1) * n + lo : pv0 + lo;
    T *__restrict__ gxt = pgx + t * n + lo;
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
        const T q = vsrc[j];
        const bool mp = STRICT ? (q > TH) : (q >= TH);
        const T v_reset = mp ? (SOFT ? q - TH : VR) : q;
        const T v_prev = from_h ? v_reset : q;
        ap[j] += DI ? double(gh) * (double(h) - double(v_prev)) : double(gh) * (double(VL) - double(v_prev));
      }
      g[j] = gh;
    }
    scale = T(1) - K;
    have = true;
  }
  for (int64_t j = 0; j < len; ++j) pgv0[lo + j] = have ? g[j] * scale : T(0);
  double total = 0.0;
  for (int64_t j = 0; j < static_cast<int64_t>(acc.size()); ++j) total += ap[j];
  return DI ? total / double(K) : total;
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

// Exact BPTT of lif_forward from the saved H [G, T, N]. grad_v_last ([G, N]) may be empty. Returns (grad_x [G, T, N],
// grad_v0 [G, N], grad_k [G] (0 unless need_k)); the caller sums over the candidates.
std::vector<torch::Tensor> lif_backward(torch::Tensor grad_s, torch::Tensor h_seq, torch::Tensor v0,
                                        torch::Tensor grad_v_last, std::vector<double> ks, std::vector<double> bs,
                                        double vl, double th, bool soft, double vr, bool strict, bool detach,
                                        int64_t sur, double sur_p, bool decay_input, bool need_k) {
  TORCH_CHECK(h_seq.dim() == 3 && h_seq.is_contiguous() && grad_s.is_contiguous() && grad_s.sizes() == h_seq.sizes(),
              "lif_backward: grad_s and H must be contiguous [G, T, N] tensors of one shape");
  TORCH_CHECK(sur >= 0 && sur <= 4, "lif_backward: unknown surrogate id ", sur);
  const int64_t G = h_seq.size(0), steps = h_seq.size(1), n = h_seq.size(2);
  TORCH_CHECK(static_cast<int64_t>(ks.size()) == G && static_cast<int64_t>(bs.size()) == G,
              "lif_backward: give one k and b per candidate");
  auto grad_x = torch::empty_like(h_seq);
  auto grad_v0 = torch::empty({G, n}, h_seq.options());
  const bool has_gv = grad_v_last.defined() && grad_v_last.numel() == G * n;
  auto grad_k = torch::zeros({G}, h_seq.options().dtype(torch::kFloat64));
  AT_DISPATCH_FLOATING_TYPES(h_seq.scalar_type(), "lif_backward", [&] {
    using T = scalar_t;
    const T *pg = grad_s.data_ptr<T>(), *ph = h_seq.data_ptr<T>(), *pv0 = v0.data_ptr<T>();
    const T *pgv = has_gv ? grad_v_last.data_ptr<T>() : nullptr;
    T *pgx = grad_x.data_ptr<T>(), *pgv0 = grad_v0.data_ptr<T>();
    const T VL = vl, TH = th, VR = vr, P = sur_p;
    const int64_t chunks = std::max<int64_t>(1, (n + kGrain - 1) / kGrain);
    std::vector<double> partial(G * chunks, 0.0);
    at::parallel_for(0, G * chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t g = c / chunks, lo = (c % chunks) * kGrain, hi = std::min(n, lo + kGrain);
        const int64_t off = g * steps * n;
        partial[c] = backward_surrogate<T>(sur, strict, soft, detach, need_k, decay_input, pg + off, ph + off, pv0,
                                           pgv ? pgv + g * n : nullptr, pgx + off, pgv0 + g * n, steps, n, lo, hi,
                                           T(ks[g]), T(bs[g]), VL, TH, VR, P);
      }
    });
    auto *pk = grad_k.data_ptr<double>();
    for (int64_t c = 0; c < G * chunks; ++c) pk[c / chunks] += partial[c];
  });
  return {grad_x, grad_v0, grad_k};
}

}  // namespace nasflow_kernels

using namespace nasflow_kernels;


PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lif_forward", &lif_forward, "IF/LIF/PLIF time loop over G candidates, forward");
  m.def("lif_backward", &lif_backward, "IF/LIF/PLIF time loop over G candidates, exact BPTT");
  m.def("alif_forward", &alif_forward, "ALIF time loop over G candidates, forward");
  m.def("alif_backward", &alif_backward, "ALIF time loop over G candidates, exact BPTT");
  m.def("cuba_forward", &cuba_forward, "CUBA time loop, forward");
  m.def("cuba_backward", &cuba_backward, "CUBA time loop, exact BPTT");
  m.def("lava_lif_fixed", &lava_lif_fixed, "Lava's bit-accurate fixed-point LIF over T steps (lava-emu)");
  m.def("spike_conv", &spike_conv, "event-driven conv2d of binary spikes (lava-emu)");
}
