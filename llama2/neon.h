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
#include "vf.h"
