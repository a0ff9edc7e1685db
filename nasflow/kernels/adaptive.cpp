// nasflow's compiled ALIF and CUBA time loops (see neurons.cpp for the conventions shared by every loop).
#include "common.h"

namespace nasflow_kernels {

// ---- ALIF: threshold TH + beta·a[t], a[t] = rho·a[t-1] + S[t-1]; the step loop's charge; soft reset subtracts the
// adapted threshold. Forward saves H only; backward recomputes a[t] forward over its block, then walks time back.
template <typename T>
void alif_forward_block(const T *px, const T *pv0, const T *pa0, const T *ps0, T *ps, T *ph, T *pv, T *pa,
                        int64_t steps, int64_t n, int64_t lo, int64_t hi, T K, T B, T BETA, T RHO, T VL, T TH, T VR,
                        bool soft, bool strict) {
  for (int64_t j = lo; j < hi; ++j) {
    T v = pv0[j], a_prev = pa0[j], s_prev = ps0[j], a = T(0);
    for (int64_t t = 0; t < steps; ++t) {
      a = RHO * a_prev;
      a = a + s_prev;
      T thr = BETA * a;
      thr = TH + thr;
      const T leak = (v - VL) * K;
      T h = v - leak;
      h = h + B * px[t * n + j];
      const bool m = fires_z(h - thr, strict);
      ps[t * n + j] = m ? T(1) : T(0);
      if (ph) ph[t * n + j] = h;
      v = m ? (soft ? h - thr : VR) : h;
      a_prev = a;
      s_prev = m ? T(1) : T(0);
    }
    pv[j] = v;
    pa[j] = a;
  }
}

// x: [T, N] shared by G candidates of (k, b, beta, rho); v0, a0 (a[-1]), s0 (S[-1]): [N]. Returns (spikes [G, T, N],
// H [G, T, N] or empty, V[T-1] [G, N], a[T-1] [G, N]).
std::vector<torch::Tensor> alif_forward(torch::Tensor x, torch::Tensor v0, torch::Tensor a0, torch::Tensor s0,
                                        std::vector<double> ks, std::vector<double> bs, std::vector<double> betas,
                                        std::vector<double> rhos, double vl, double th, bool soft, double vr,
                                        bool strict, bool save_h) {
  const int64_t steps = x.size(0), n = x.size(1), G = static_cast<int64_t>(ks.size());
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && v0.is_contiguous() && a0.is_contiguous() && s0.is_contiguous() &&
                  v0.numel() == n && a0.numel() == n && s0.numel() == n,
              "alif_forward: x must be a contiguous [T, N] tensor and v0, a0, s0 contiguous [N] tensors");
  TORCH_CHECK(G >= 1 && bs.size() == ks.size() && betas.size() == ks.size() && rhos.size() == ks.size(),
              "alif_forward: give one k, b, beta and rho per candidate");
  auto spikes = torch::empty({G, steps, n}, x.options());
  auto h_seq = save_h ? torch::empty({G, steps, n}, x.options()) : torch::empty({0}, x.options());
  auto v_last = torch::empty({G, n}, x.options());
  auto a_last = torch::empty({G, n}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "alif_forward", [&] {
    using T = scalar_t;
    const T *px = x.data_ptr<T>();
    T *ph = save_h ? h_seq.data_ptr<T>() : nullptr;
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t g = 0; g < G; ++g) {
        alif_forward_block<T>(px, v0.data_ptr<T>(), a0.data_ptr<T>(), s0.data_ptr<T>(),
                              spikes.data_ptr<T>() + g * steps * n, ph ? ph + g * steps * n : nullptr,
                              v_last.data_ptr<T>() + g * n, a_last.data_ptr<T>() + g * n, steps, n, lo, hi, T(ks[g]),
                              T(bs[g]), T(betas[g]), T(rhos[g]), T(vl), T(th), T(vr), soft, strict);
      }
    });
  });
  return {spikes, h_seq, v_last, a_last};
}

template <typename T, int SUR>
void alif_backward_block(const T *pg, const T *ph, const T *pa0, const T *ps0, const T *pgv, const T *pga,
                         const T *pgs, T *pgx, T *pgv0, T *pga0, T *pgs0, int64_t steps, int64_t n, int64_t lo,
                         int64_t hi, T K, T B, T BETA, T RHO, T TH, T VR, T P, bool soft, bool strict, bool detach) {
  std::vector<T> a_seq(steps);
  for (int64_t j = lo; j < hi; ++j) {
    T a_prev = pa0[j], s_prev = ps0[j];
    for (int64_t t = 0; t < steps; ++t) {  // recompute a[t] exactly as the forward did
      T a = RHO * a_prev;
      a = a + s_prev;
      a_seq[t] = a;
      T thr = BETA * a;
      thr = TH + thr;
      s_prev = fires_z(ph[t * n + j] - thr, strict) ? T(1) : T(0);
      a_prev = a;
    }
    T gv = pgv ? pgv[j] : T(0), ga_next = T(0);
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T h = ph[t * n + j];
      T thr = BETA * a_seq[t];
      thr = TH + thr;
      const T z = h - thr;
      const bool m = fires_z(z, strict);
      const T sg = surrogate<T>(SUR, z, P);
      const bool last = t == steps - 1;
      T gs = pg[t * n + j] + ga_next + ((last && pgs) ? pgs[j] : T(0));
      if (!detach) gs += gv * (soft ? -thr : (VR - h));
      const T gz = gs * sg;
      const T gh = gz + gv * (soft ? T(1) : (m ? T(0) : T(1)));
      const T gthr = -gz - ((soft && m) ? gv : T(0));
      const T ga = BETA * gthr + RHO * ga_next + ((last && pga) ? pga[j] : T(0));
      pgx[t * n + j] = gh * B;
      gv = gh * (T(1) - K);
      ga_next = ga;
    }
    pgv0[j] = gv;
    pga0[j] = RHO * ga_next;
    pgs0[j] = ga_next;
  }
}

template <typename T, typename... A>
void alif_backward_sur(int64_t sur, A... args) {
  switch (sur) {
    case 0: return alif_backward_block<T, 0>(args...);
    case 1: return alif_backward_block<T, 1>(args...);
    case 2: return alif_backward_block<T, 2>(args...);
    case 3: return alif_backward_block<T, 3>(args...);
    default: return alif_backward_block<T, 4>(args...);
  }
}

// Exact BPTT of alif_forward. grad_v_last, grad_a_last, grad_s_last ([G, N]) may be empty. Returns (grad_x [G, T, N],
// grad_v0, grad_a0, grad_s0 [G, N]); the caller sums over the candidates.
std::vector<torch::Tensor> alif_backward(torch::Tensor grad_s, torch::Tensor h_seq, torch::Tensor a0, torch::Tensor s0,
                                         torch::Tensor grad_v_last, torch::Tensor grad_a_last,
                                         torch::Tensor grad_s_last, std::vector<double> ks, std::vector<double> bs,
                                         std::vector<double> betas, std::vector<double> rhos, double th, bool soft,
                                         double vr, bool strict, bool detach, int64_t sur, double sur_p) {
  TORCH_CHECK(h_seq.dim() == 3 && h_seq.is_contiguous() && grad_s.is_contiguous() && grad_s.sizes() == h_seq.sizes(),
              "alif_backward: grad_s and H must be contiguous [G, T, N] tensors of one shape");
  TORCH_CHECK(sur >= 0 && sur <= 4, "alif_backward: unknown surrogate id ", sur);
  const int64_t G = h_seq.size(0), steps = h_seq.size(1), n = h_seq.size(2);
  auto grad_x = torch::empty_like(h_seq);
  auto gv0 = torch::empty({G, n}, h_seq.options()), ga0 = torch::empty({G, n}, h_seq.options());
  auto gs0 = torch::empty({G, n}, h_seq.options());
  auto given = [&](const torch::Tensor &t) { return t.defined() && t.numel() == G * n; };
  AT_DISPATCH_FLOATING_TYPES(h_seq.scalar_type(), "alif_backward", [&] {
    using T = scalar_t;
    const T *pgv = given(grad_v_last) ? grad_v_last.data_ptr<T>() : nullptr;
    const T *pga = given(grad_a_last) ? grad_a_last.data_ptr<T>() : nullptr;
    const T *pgs = given(grad_s_last) ? grad_s_last.data_ptr<T>() : nullptr;
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t g = 0; g < G; ++g) {
        const int64_t off = g * steps * n, o = g * n;
        const T K = ks[g], B = bs[g], BETA = betas[g], RHO = rhos[g], TH = th, VR = vr, P = sur_p;
        alif_backward_sur<T>(sur, grad_s.data_ptr<T>() + off, h_seq.data_ptr<T>() + off, a0.data_ptr<T>(),
                             s0.data_ptr<T>(), pgv ? pgv + o : nullptr, pga ? pga + o : nullptr,
                             pgs ? pgs + o : nullptr, grad_x.data_ptr<T>() + off, gv0.data_ptr<T>() + o,
                             ga0.data_ptr<T>() + o, gs0.data_ptr<T>() + o, steps, n, lo, hi, K, B, BETA, RHO, TH, VR,
                             P, soft, strict, detach);
      }
    });
  });
  return {grad_x, gv0, ga0, gs0};
}

// ---- CUBA (Lava's current-based LIF): U[t] = U[t-1]·(1 - du) + X[t]; H[t] = V[t-1]·(1 - dv) + U[t] + bias.
// x: [T, N]; v0, u0: [N]. Returns (spikes [T, N], H [T, N] or empty, V[T-1] [N], U[T-1] [N]).
std::vector<torch::Tensor> cuba_forward(torch::Tensor x, torch::Tensor v0, torch::Tensor u0, double omdu, double omdv,
                                        double bias, double th, bool soft, double vr, bool strict, bool save_h) {
  const int64_t steps = x.size(0), n = x.size(1);
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && v0.is_contiguous() && u0.is_contiguous() && v0.numel() == n &&
                  u0.numel() == n,
              "cuba_forward: x must be a contiguous [T, N] tensor and v0, u0 contiguous [N] tensors");
  auto spikes = torch::empty_like(x);
  auto h_seq = save_h ? torch::empty_like(x) : torch::empty({0}, x.options());
  auto v_last = torch::empty_like(v0), u_last = torch::empty_like(u0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cuba_forward", [&] {
    using T = scalar_t;
    const T *px = x.data_ptr<T>(), *pv0 = v0.data_ptr<T>(), *pu0 = u0.data_ptr<T>();
    T *ps = spikes.data_ptr<T>(), *ph = save_h ? h_seq.data_ptr<T>() : nullptr;
    T *pv = v_last.data_ptr<T>(), *pu = u_last.data_ptr<T>();
    const T OMDU = omdu, OMDV = omdv, BIAS = bias, TH = th, VR = vr;
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t j = lo; j < hi; ++j) {
        T v = pv0[j], u = pu0[j];
        for (int64_t t = 0; t < steps; ++t) {
          u = u * OMDU;
          u = u + px[t * n + j];
          T h = v * OMDV;
          h = h + u;
          h = h + BIAS;
          const bool m = fires_z(h - TH, strict);
          ps[t * n + j] = m ? T(1) : T(0);
          if (ph) ph[t * n + j] = h;
          v = m ? (soft ? h - TH : VR) : h;
        }
        pv[j] = v;
        pu[j] = u;
      }
    });
  });
  return {spikes, h_seq, v_last, u_last};
}

template <typename T, int SUR>
void cuba_backward_block(const T *pg, const T *ph, const T *pgv, const T *pgu, T *pgx, T *pgv0, T *pgu0,
                         int64_t steps, int64_t n, int64_t lo, int64_t hi, T OMDU, T OMDV, T TH, T VR, T P, bool soft,
                         bool strict, bool detach) {
  for (int64_t j = lo; j < hi; ++j) {
    T gv = pgv ? pgv[j] : T(0), gu_carry = pgu ? pgu[j] : T(0);
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T h = ph[t * n + j], z = h - TH;
      const bool m = fires_z(z, strict);
      T gs = pg[t * n + j];
      if (!detach) gs += gv * (soft ? -TH : (VR - h));
      const T gh = gs * surrogate<T>(SUR, z, P) + gv * (soft ? T(1) : (m ? T(0) : T(1)));
      const T gu = gh + gu_carry;
      pgx[t * n + j] = gu;
      gv = gh * OMDV;
      gu_carry = gu * OMDU;
    }
    pgv0[j] = gv;
    pgu0[j] = gu_carry;
  }
}

template <typename T, typename... A>
void cuba_backward_sur(int64_t sur, A... args) {
  switch (sur) {
    case 0: return cuba_backward_block<T, 0>(args...);
    case 1: return cuba_backward_block<T, 1>(args...);
    case 2: return cuba_backward_block<T, 2>(args...);
    case 3: return cuba_backward_block<T, 3>(args...);
    default: return cuba_backward_block<T, 4>(args...);
  }
}

// Exact BPTT of cuba_forward; grad_v_last and grad_u_last ([N]) may be empty. Returns (grad_x, grad_v0, grad_u0).
std::vector<torch::Tensor> cuba_backward(torch::Tensor grad_s, torch::Tensor h_seq, torch::Tensor grad_v_last,
                                         torch::Tensor grad_u_last, double omdu, double omdv, double th, bool soft,
                                         double vr, bool strict, bool detach, int64_t sur, double sur_p) {
  TORCH_CHECK(h_seq.dim() == 2 && h_seq.is_contiguous() && grad_s.is_contiguous() && grad_s.sizes() == h_seq.sizes(),
              "cuba_backward: grad_s and H must be contiguous [T, N] tensors of one shape");
  TORCH_CHECK(sur >= 0 && sur <= 4, "cuba_backward: unknown surrogate id ", sur);
  const int64_t steps = h_seq.size(0), n = h_seq.size(1);
  auto grad_x = torch::empty_like(h_seq);
  auto gv0 = torch::empty({n}, h_seq.options()), gu0 = torch::empty({n}, h_seq.options());
  auto given = [&](const torch::Tensor &t) { return t.defined() && t.numel() == n; };
  AT_DISPATCH_FLOATING_TYPES(h_seq.scalar_type(), "cuba_backward", [&] {
    using T = scalar_t;
    const T *pgv = given(grad_v_last) ? grad_v_last.data_ptr<T>() : nullptr;
    const T *pgu = given(grad_u_last) ? grad_u_last.data_ptr<T>() : nullptr;
    const T OMDU = omdu, OMDV = omdv, TH = th, VR = vr, P = sur_p;
    at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      cuba_backward_sur<T>(sur, grad_s.data_ptr<T>(), h_seq.data_ptr<T>(), pgv, pgu, grad_x.data_ptr<T>(),
                           gv0.data_ptr<T>(), gu0.data_ptr<T>(), steps, n, lo, hi, OMDU, OMDV, TH, VR, P, soft, strict,
                           detach);
    });
  });
  return {grad_x, gv0, gu0};
}

}  // namespace nasflow_kernels
