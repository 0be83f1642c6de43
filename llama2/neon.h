// neon.h: the fp32 vector operations of aarch64 NEON (4 floats a vector) for vf.h's dot and matmul tile; the other kernels run ops.h's loops.
#pragma once
#include <arm_neon.h>
#define USE_NEON 1

typedef float32x4_t vf;
#define VF 4
#define vf_zero() vdupq_n_f32(0.0f)
#define vf_load(p) vld1q_f32(p)
#define vf_fma(a, b, c) vfmaq_f32(c, a, b)
#define vf_sum(v) vaddvq_f32(v)
// vaddvq_f32 adds (l0 + l1) + (l2 + l3): pairwise adds of 4 vectors do the same additions side by side
#define vf_sum4(out, a, b, c, d) vst1q_f32(out, vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)))
#include "vf.h"
