// hd.cu — round 11, helper hd: the switches of the head at 2..64 tokens and of sampling's
// first pass, read once a process (cached), never per token. (No header: a new kernels/*.h
// would rebuild every object of the tree; the users declare these four functions.)
//
// The lean first pass is sample.cu's sample_pre_kernel<true, ...>; the checks and the bench hd_test.cu.
//
// SPARKD_HD=0: today's path exactly (the head without split-K room, sample_pre_kernel<false, false>).
// Default 1:
// - the head product (engine.cu) at SPARKD_HD_HEAD_MIN..SPARKD_HD_HEAD_MAX tokens (default
//   2..64; run 0 had 33..64) gets the engine's split-K room (g->splitk) as every layer product
//   does, so gemms2 may take it (gemms2 wants two pieces of partials a CTA and refused the head
//   without room: at 2..32 gemms_kernel took it, at 33..64 w64). Q8_0's head at 33..64 keeps
//   w64 (T64_G2 level 1 keeps Q8_0 off gemms2 there). Kernel bench run 0 (H200, us, without /
//   with room): Q6_K T 8 220.6 / 179.5, T 32 461.2 / 238.9, T 64 409.5 / 344.6; Q8_0 T 8
//   198.5 / 179.0, T 32 317.5 / 229.4, T 64 341.2 / 339.5;
// - SPARKD_HD_SMP (default 1): cuda_sample's first pass skips what its row does not need:
//   the penalty counts where the penalties are neutral (rep 1, freq +0, pres +0: the same
//   bits), the processed row (work) where the row is greedy (only sampling reads it);
// - SPARKD_HD_GREEDY (default 0 after run 1: kernel bench 1 row 17.0 -> 9.9 us, 64 rows 43.0 -> 34.6, but
//   no same-run win in the model: b1 Q4_K_M 431.5 on, 435.1 off, +-8; =1 with SPARKD_HD_SMP): where every
//   row of a call is greedy with no
//   top logprobs (engine.cu knows from its host rows), sampling is one launch
//   (cuda_sample_greedy: the first pass's last CTA a row finishes the row) instead of three.
#include <stdlib.h>
#include <string.h>

#include "cuda_kern.h"
#include "kern_util.cuh"

// Whether the head product of T tokens gets the split-K room (engine.cu).
extern "C" int cuda_hd_head_work(int T);
// Whether cuda_sample runs the lean first pass (sample_pre_kernel<true, ...>, sample.cu).
extern "C" int cuda_hd_smp(void);
// Whether the engine samples these host rows (n) with cuda_sample_greedy (one launch): SPARKD_HD and
// SPARKD_HD_GREEDY on, every row greedy (temperature not > 0) with no top logprobs.
extern "C" int cuda_hd_greedy(const cuda_sample_row *rows, int n);
// Tests and benches: 1 / 0 = on / off, -1 = as SPARKD_HD says; returns what it was (0 / 1).
extern "C" int cuda_hd_set(int on);
// Tests and benches: the head's token range (min, max; 0: keep, -1: the env / default) and the
// sampling part (1 / 0; -1: as SPARKD_HD_SMP says).
extern "C" void cuda_hd_tune(int head_min, int head_max, int smp);
// Tests and benches: SPARKD_HD_GREEDY 1 / 0 (-1: as the env says).
extern "C" void cuda_hd_greedy_set(int on);

static int hd_mode = -1, hd_min = -1, hd_max = -1, hd_smp_on = -1, hd_greedy_on = -1;

static void hd_env() {
    if (hd_mode < 0) hd_mode = cuda_env_int("SPARKD_HD", 1) != 0;
    if (hd_min < 0) hd_min = cuda_env_int("SPARKD_HD_HEAD_MIN", 2);
    if (hd_max < 0) hd_max = cuda_env_int("SPARKD_HD_HEAD_MAX", 64);
    if (hd_smp_on < 0) hd_smp_on = cuda_env_int("SPARKD_HD_SMP", 1) != 0;
    if (hd_greedy_on < 0) hd_greedy_on = cuda_env_int("SPARKD_HD_GREEDY", 0) != 0;
}

extern "C" int cuda_hd_greedy(const cuda_sample_row *rows, int n) {
    hd_env();
    if (!hd_mode || !hd_smp_on || !hd_greedy_on || !rows || n < 1) return 0;
    for (int i = 0; i < n; i++)
        if (rows[i].temperature > 0.0f || rows[i].n_top > 0) return 0;
    return 1;
}

extern "C" int cuda_hd_head_work(int T) {
    hd_env();
    return hd_mode && T >= 2 && T >= hd_min && T <= hd_max;
}

extern "C" int cuda_hd_smp(void) {
    hd_env();
    return hd_mode && hd_smp_on;
}

extern "C" int cuda_hd_set(int on) {
    hd_env();
    const int was = hd_mode;
    hd_mode = on < 0 ? cuda_env_int("SPARKD_HD", 1) != 0 : on != 0;
    return was;
}

extern "C" void cuda_hd_tune(int head_min, int head_max, int smp) {
    hd_env();
    if (head_min < 0) hd_min = cuda_env_int("SPARKD_HD_HEAD_MIN", 2);
    else if (head_min > 0) hd_min = head_min;
    if (head_max < 0) hd_max = cuda_env_int("SPARKD_HD_HEAD_MAX", 64);
    else if (head_max > 0) hd_max = head_max;
    if (smp >= 0) hd_smp_on = smp != 0;
    else hd_smp_on = cuda_env_int("SPARKD_HD_SMP", 1) != 0;
}

extern "C" void cuda_hd_greedy_set(int on) {
    hd_env();
    hd_greedy_on = on < 0 ? cuda_env_int("SPARKD_HD_GREEDY", 0) != 0 : on != 0;
}
