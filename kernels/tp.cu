// tp.cu — tensor parallelism: the communicators (NCCL loaded at run time; a local one
// for N shards on one GPU), the engine hooks of tp.h, engine_tp_ops (rank 0 drives, the
// other ranks follow) and tp_local_ops (one process). See tp.h.
#include "cuda.h"
#include "cuda_kern.h"
#include "tp.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nccl.h>

#include "kern_util.cuh"

extern "C" {
#include "engine.h"
#include "shard.h"
#include "tpwire.h"
}

namespace {

double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// ----------------------------------------------------------------------------- NCCL

// The NCCL entry points, resolved from libnccl.so.2 at run time (nccl.h gives the types).
struct nccl_api {
    void *h;
    decltype(&ncclGetVersion) GetVersion;
    decltype(&ncclGetUniqueId) GetUniqueId;
    decltype(&ncclCommInitRank) CommInitRank;
    decltype(&ncclCommAbort) CommAbort;
    decltype(&ncclCommGetAsyncError) CommGetAsyncError;
    decltype(&ncclGetErrorString) GetErrorString;
    decltype(&ncclAllReduce) AllReduce;
    decltype(&ncclSend) Send;
    decltype(&ncclRecv) Recv;
    decltype(&ncclGroupStart) GroupStart;
    decltype(&ncclGroupEnd) GroupEnd;
};
nccl_api nc;
pthread_mutex_t nc_mu = PTHREAD_MUTEX_INITIALIZER;

int nccl_load(const char *path, err *e) {
    pthread_mutex_lock(&nc_mu);
    int rc = 0;
    if (!nc.h) {
        const char *lib = path && path[0] ? path : "libnccl.so.2";
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            rc = err_set(e, ERR_UNSUPPORTED, "tensor parallel needs NCCL: cannot load %s (%s); install libnccl2 or set "
                                             "[parallel] nccl_library", lib, dlerror());
        } else {
            nccl_api a;
            memset(&a, 0, sizeof a);
            a.h = h;
#define SYM(f)                                                                                           \
    if (!rc && !(a.f = reinterpret_cast<decltype(a.f)>(dlsym(h, "nccl" #f))))                           \
        rc = err_set(e, ERR_UNSUPPORTED, "%s has no nccl%s (NCCL 2.18 or newer is needed)", lib, #f);
            SYM(GetVersion) SYM(GetUniqueId) SYM(CommInitRank) SYM(CommAbort) SYM(CommGetAsyncError)
            SYM(GetErrorString) SYM(AllReduce) SYM(Send) SYM(Recv) SYM(GroupStart) SYM(GroupEnd)
#undef SYM
            if (rc) dlclose(h);
            else nc = a;
        }
    }
    pthread_mutex_unlock(&nc_mu);
    return rc;
}

int nccl_fail(err *e, ncclResult_t r, const char *what) {
    return err_set(e, ERR_UNAVAILABLE, "NCCL %s: %s", what, nc.GetErrorString ? nc.GetErrorString(r) : "failed");
}

// ----------------------------------------------------------------------------- local group

// N shards in one process: the partial results meet on the device through events; the
// host threads meet at a barrier around each exchange.
struct tp_group {
    int size;
    pthread_barrier_t bar;
    cudaEvent_t ready[ENGINE_PARALLEL_MAX], done[ENGINE_PARALLEL_MAX];
    const float *ptr[ENGINE_PARALLEL_MAX]; // each rank's partial buffer of the exchange
    const float *shard[ENGINE_PARALLEL_MAX]; // each rank's logits shard
};

struct ptrs8 {
    const float *p[ENGINE_PARALLEL_MAX];
};

// out[i] = in_0[i] + in_1[i] + ... in rank order (the same bits on every rank).
__global__ void sum_ranks(float *out, ptrs8 in, int n_in, size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float s = in.p[0][i];
        for (int k = 1; k < n_in; k++) s += in.p[k][i];
        out[i] = s;
    }
}

} // namespace

enum { TP_NCCL = 1, TP_LOCAL = 2 };

struct tp_ctx {
    int kind, size, rank;
    shard *sh;
    int S;                       // max_seqs: rows of the logits buffers
    int V, v0[ENGINE_PARALLEL_MAX], vn[ENGINE_PARALLEL_MAX], vmax;
    float *d_shard;              // (S, vn[rank]) this rank's logits
    float *d_recv;               // rank 0, NCCL: (size, S, vmax) the others' shards
    float *d_sum;                // local: (max_tokens, dim) scratch of the exchange
    uint64_t bytes;              // device bytes of the three
    // NCCL
    ncclComm_t comm;
    int aborted;
    int fds[ENGINE_PARALLEL_MAX]; // control sockets: rank 0 -> fds[q] of rank q; rank q -> fds[0]
    int step_timeout_ms;
    // local
    tp_group *grp;
};

namespace {

void *abort_main(void *comm) {
    nc.CommAbort(reinterpret_cast<ncclComm_t>(comm));
    return NULL;
}

// Aborts the communicator on a detached thread of its own: ncclCommAbort can block for good
// (seen on an H200 pair: rank 1 killed during an all-reduce, rank 0's abort waited inside
// NCCL on a condition that never came), and the step that found the fault must return its
// error at once so the front end ends the streams and answers 503.
void ctx_abort(tp_ctx *t) {
    if (t->kind == TP_NCCL && t->comm && !t->aborted) {
        t->aborted = 1;
        pthread_attr_t a;
        pthread_t th;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &a, abort_main, t->comm)) nc.CommAbort(t->comm); // no thread: here
        pthread_attr_destroy(&a);
    }
}

int ctx_alloc(tp_ctx *t, int S, int max_tokens, int dim, err *e) {
    t->S = S;
    uint64_t a = ((uint64_t)S * t->vn[t->rank] * 4 + 255) & ~255ull;
    uint64_t b = t->kind == TP_NCCL && t->rank == 0 ? ((uint64_t)t->size * S * t->vmax * 4 + 255) & ~255ull : 0;
    uint64_t c = t->kind == TP_LOCAL ? ((uint64_t)max_tokens * dim * 4 + 255) & ~255ull : 0;
    uint8_t *p = NULL;
    cudaError_t ce = cudaMalloc((void **)&p, a + b + c);
    if (ce != cudaSuccess) return cuda_fail(e, ce, "cudaMalloc(tensor parallel buffers)", __FILE__, __LINE__);
    t->d_shard = (float *)p;
    t->d_recv = b ? (float *)(p + a) : NULL;
    t->d_sum = c ? (float *)(p + a + b) : NULL;
    t->bytes = a + b + c;
    return 0;
}

uint64_t ctx_bytes(int kind, int size, int rank, int S, int V, int max_tokens, int dim) {
    int v0, vn, vmax = 0;
    for (int q = 0; q < size; q++) {
        shard_vocab(V, size, q, &v0, &vn);
        if (vn > vmax) vmax = vn;
    }
    shard_vocab(V, size, rank, &v0, &vn);
    uint64_t a = ((uint64_t)S * vn * 4 + 255) & ~255ull;
    uint64_t b = kind == TP_NCCL && rank == 0 ? ((uint64_t)size * S * vmax * 4 + 255) & ~255ull : 0;
    uint64_t c = kind == TP_LOCAL ? ((uint64_t)max_tokens * dim * 4 + 255) & ~255ull : 0;
    return a + b + c;
}

tp_ctx *ctx_new(int kind, int size, int rank, int V, err *e) {
    tp_ctx *t = (tp_ctx *)calloc(1, sizeof(tp_ctx));
    if (!t) {
        err_set(e, ERR_NOMEM, "out of memory");
        return NULL;
    }
    t->kind = kind;
    t->size = size;
    t->rank = rank;
    t->V = V;
    for (int q = 0; q < size; q++) {
        shard_vocab(V, size, q, &t->v0[q], &t->vn[q]);
        if (t->vn[q] > t->vmax) t->vmax = t->vn[q];
    }
    for (int q = 0; q < ENGINE_PARALLEL_MAX; q++) t->fds[q] = -1;
    t->step_timeout_ms = 30000;
    return t;
}

void ctx_free(tp_ctx *t) {
    if (!t) return;
    // after an abort a collective may still hold the stream: cudaFree would wait on it (the
    // memory goes with the process)
    if (t->d_shard && !t->aborted) cudaFree(t->d_shard);
    shard_free(t->sh);
    for (int q = 0; q < ENGINE_PARALLEL_MAX; q++)
        if (t->fds[q] >= 0) close(t->fds[q]);
    free(t);
}

} // namespace

// ----------------------------------------------------------------------------- hooks

extern "C" const shard *tp_shard(const tp_ctx *t) { return t->sh; }
extern "C" float *tp_logits_shard(tp_ctx *t) { return t->d_shard; }
extern "C" int tp_graphs_ok(const tp_ctx *t) { return t->kind == TP_NCCL; }

extern "C" int tp_allreduce(tp_ctx *t, float *buf, size_t count, void *stream, err *e) {
    cudaStream_t st = (cudaStream_t)stream;
    if (t->kind == TP_NCCL) {
        if (t->aborted) return err_set(e, ERR_UNAVAILABLE, "the tensor-parallel group was aborted");
        ncclResult_t r = nc.AllReduce(buf, buf, count, ncclFloat32, ncclSum, t->comm, st);
        return r == ncclSuccess ? 0 : nccl_fail(e, r, "all-reduce");
    }
    tp_group *G = t->grp;
    const int r = t->rank;
    G->ptr[r] = buf;
    CUDA_TRY(cudaEventRecord(G->ready[r], st));
    pthread_barrier_wait(&G->bar);
    ptrs8 in;
    memset(&in, 0, sizeof in);
    for (int q = 0; q < G->size; q++) {
        CUDA_TRY(cudaStreamWaitEvent(st, G->ready[q], 0));
        in.p[q] = G->ptr[q];
    }
    const int threads = 256;
    const int blocks = (int)((count + threads - 1) / threads < 1024 ? (count + threads - 1) / threads : 1024);
    sum_ranks<<<blocks, threads, 0, st>>>(t->d_sum, in, G->size, count);
    CUDA_TRY(cudaGetLastError());
    CUDA_TRY(cudaEventRecord(G->done[r], st));
    pthread_barrier_wait(&G->bar); // every rank has read every partial once its done event fires
    for (int q = 0; q < G->size; q++) CUDA_TRY(cudaStreamWaitEvent(st, G->done[q], 0));
    CUDA_TRY(cudaMemcpyAsync(buf, t->d_sum, count * 4, cudaMemcpyDeviceToDevice, st));
    return 0;
}

extern "C" int tp_gather_logits(tp_ctx *t, float *logits, int n, int ld, void *stream, err *e) {
    cudaStream_t st = (cudaStream_t)stream;
    const int r = t->rank;
    if (t->kind == TP_NCCL) {
        if (t->aborted) return err_set(e, ERR_UNAVAILABLE, "the tensor-parallel group was aborted");
        ncclResult_t res;
        if (r != 0) {
            res = nc.Send(t->d_shard, (size_t)n * t->vn[r], ncclFloat32, 0, t->comm, st);
            return res == ncclSuccess ? 0 : nccl_fail(e, res, "send (logits)");
        }
        if ((res = nc.GroupStart()) != ncclSuccess) return nccl_fail(e, res, "group");
        for (int q = 1; q < t->size; q++)
            if ((res = nc.Recv(t->d_recv + (size_t)q * t->S * t->vmax, (size_t)n * t->vn[q], ncclFloat32, q, t->comm, st)) !=
                ncclSuccess) {
                nc.GroupEnd();
                return nccl_fail(e, res, "receive (logits)");
            }
        if ((res = nc.GroupEnd()) != ncclSuccess) return nccl_fail(e, res, "group");
        CUDA_TRY(cudaMemcpy2DAsync(logits + t->v0[0], (size_t)ld * 4, t->d_shard, (size_t)t->vn[0] * 4, (size_t)t->vn[0] * 4,
                                 (size_t)n, cudaMemcpyDeviceToDevice, st));
        for (int q = 1; q < t->size; q++)
            CUDA_TRY(cudaMemcpy2DAsync(logits + t->v0[q], (size_t)ld * 4, t->d_recv + (size_t)q * t->S * t->vmax,
                                     (size_t)t->vn[q] * 4, (size_t)t->vn[q] * 4, (size_t)n, cudaMemcpyDeviceToDevice, st));
        return 0;
    }
    tp_group *G = t->grp;
    G->shard[r] = t->d_shard;
    CUDA_TRY(cudaEventRecord(G->ready[r], st));
    pthread_barrier_wait(&G->bar);
    if (r == 0)
        for (int q = 0; q < G->size; q++) {
            CUDA_TRY(cudaStreamWaitEvent(st, G->ready[q], 0));
            CUDA_TRY(cudaMemcpy2DAsync(logits + t->v0[q], (size_t)ld * 4, G->shard[q], (size_t)t->vn[q] * 4,
                                     (size_t)t->vn[q] * 4, (size_t)n, cudaMemcpyDeviceToDevice, st));
        }
    CUDA_TRY(cudaEventRecord(G->done[r], st));
    pthread_barrier_wait(&G->bar);
    CUDA_TRY(cudaStreamWaitEvent(st, G->done[0], 0)); // rank 0 has copied every shard
    return 0;
}

extern "C" int tp_wait(tp_ctx *t, void *stream, err *e) {
    cudaStream_t st = (cudaStream_t)stream;
    if (t->kind != TP_NCCL) {
        CUDA_TRY(cudaStreamSynchronize(st));
        return 0;
    }
    const double t0 = now_s();
    double next_check = t0;
    for (;;) {
        cudaError_t ce = cudaStreamQuery(st);
        if (ce == cudaSuccess) return 0;
        if (ce != cudaErrorNotReady) {
            ctx_abort(t);
            return cuda_fail(e, ce, "step", __FILE__, __LINE__);
        }
        const double now = now_s();
        if (now >= next_check) {
            next_check = now + 0.001;
            ncclResult_t ae = ncclSuccess;
            if (nc.CommGetAsyncError(t->comm, &ae) != ncclSuccess || (ae != ncclSuccess && ae != ncclInProgress)) {
                fprintf(stderr, "sparkd: tensor parallel rank %d: NCCL reports %s; aborting the group\n", t->rank,
                        nc.GetErrorString(ae));
                ctx_abort(t);
                return err_set(e, ERR_UNAVAILABLE, "tensor parallel: NCCL failed (%s)", nc.GetErrorString(ae));
            }
            for (int q = 0; q < t->size; q++)
                if (t->fds[q] >= 0 && tpwire_peer_gone(t->fds[q])) {
                    fprintf(stderr, "sparkd: tensor parallel rank %d: rank %d closed its control connection (exited?) "
                                    "during a step; aborting the group\n", t->rank, q);
                    ctx_abort(t);
                    return err_set(e, ERR_UNAVAILABLE, "tensor parallel: rank %d went away", q);
                }
            if (now - t0 > t->step_timeout_ms / 1000.0) {
                fprintf(stderr, "sparkd: tensor parallel rank %d: a step did not finish within %d s; aborting the group\n",
                        t->rank, t->step_timeout_ms / 1000);
                ctx_abort(t);
                return err_set(e, ERR_UNAVAILABLE, "tensor parallel: a step did not finish within %d s",
                               t->step_timeout_ms / 1000);
            }
        }
        sched_yield();
    }
}

// ----------------------------------------------------------------------------- NCCL engine

namespace {

struct tp_engine {
    engine_parallel par;
    tp_ctx *ctx;
    engine *inner;       // the CUDA engine over this rank's shard
    engine_opts opts;    // what every rank shares (rank 0's, sent in WELCOME)
    int kv_block;
    int fault;
    uint8_t *step;       // (stepcap) encoded STEP (rank 0) / received STEP (others)
    size_t stepcap;
    engine_seq *seqs;    // (max_seqs) decoded STEP
    tpwire_limits lim;
    uint64_t plan_work;  // tp buffers, for usage
};

tp_engine *TE(engine *g) { return reinterpret_cast<tp_engine *>(g); }

// The options every rank runs with: the engine's own, on this rank's GPU, one rank.
engine_opts rank_opts(const engine_opts *o) {
    engine_opts r = *o;
    r.device = o->parallel->gpu;
    r.parallel = NULL;
    return r;
}

int check_par(const engine_opts *o, err *e) {
    const engine_parallel *p = o->parallel;
    if (!p || p->size < 2 || p->size > ENGINE_PARALLEL_MAX || p->rank < 0 || p->rank >= p->size)
        return err_set(e, ERR_INVALID, "tensor parallel: size %d, rank %d", p ? p->size : 0, p ? p->rank : 0);
    if (!p->addr[0]) return err_set(e, ERR_INVALID, "tensor parallel: no [parallel] address");
    return 0;
}

int tp_plan(const model *m, const engine_opts *o, engine_plan *p, err *e) {
    int rc = check_par(o, e);
    if (rc) return rc;
    shard *sh;
    if ((rc = shard_open(&sh, m, o->parallel->size, o->parallel->rank, o->parallel->moe_split, e))) return rc;
    engine_opts ro = rank_opts(o);
    rc = engine_cuda_ops.plan(shard_model(sh), &ro, p, e);
    if (!rc) {
        const uint64_t x = ctx_bytes(TP_NCCL, o->parallel->size, o->parallel->rank, o->max_seqs, m->hp.n_vocab,
                                     o->max_tokens, m->hp.dim);
        p->work_bytes += x;
        p->total_bytes += x;
    }
    shard_free(sh);
    return rc;
}

void tp_destroy(engine *g) {
    tp_engine *T = TE(g);
    if (!T) return;
    if (T->ctx && T->par.rank == 0)
        for (int q = 1; q < T->par.size; q++)
            if (T->ctx->fds[q] >= 0) tpwire_send(T->ctx->fds[q], TPWIRE_BYE, NULL, 0, 1000, NULL);
    // after a group fault the inner engine's stream may hold a collective that never ends:
    // its teardown (stream sync, frees) would wait on it, so the GPU side is left to the
    // process exit
    if (T->fault) {
        // the GPU state is wedged (a collective may never end, NCCL's abort may still run on
        // its thread): the process ends here without the CUDA and NCCL teardown, which
        // crashed at exit on an H200 pair (SIGSEGV after 'stopped'). The service manager
        // restarts it; the status says the group failed.
        fprintf(stderr, "sparkd: tensor parallel: the group failed; exiting without GPU teardown\n");
        fflush(NULL);
        _exit(1);
    }
    if (T->inner) engine_cuda_ops.destroy(T->inner);
    if (T->ctx) {
        // a healthy group: abort here, on this thread, before the process can exit (abort
        // rather than destroy: it never waits for a peer that may be gone). Not ctx_abort's
        // detached thread: an exit while NCCL still runs on it crashed (SIGSEGV after the
        // goodbye on the H200 pair); the threaded abort is only for a step that found a fault.
        if (T->ctx->kind == TP_NCCL && T->ctx->comm && !T->ctx->aborted) {
            T->ctx->aborted = 1;
            nc.CommAbort(T->ctx->comm);
        }
        ctx_free(T->ctx);
    }
    free(T->step);
    free(T->seqs);
    free(T);
}

struct init_job {
    ncclUniqueId id;
    int size, rank, dev;
    ncclComm_t comm;
    ncclResult_t res;
    int done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

void *init_main(void *arg) {
    init_job *j = (init_job *)arg;
    cudaSetDevice(j->dev);
    ncclComm_t c = NULL;
    ncclResult_t r = nc.CommInitRank(&c, j->size, j->id, j->rank);
    pthread_mutex_lock(&j->mu);
    j->comm = c;
    j->res = r;
    j->done = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

// ncclCommInitRank in a thread of its own, waited for at most timeout_s: a peer that
// dies between the handshake and here cannot hang the start (the thread is then left
// behind, blocked in NCCL, and the start fails).
int nccl_init(tp_ctx *t, const ncclUniqueId *id, int dev, int timeout_s, err *e) {
    init_job *j = (init_job *)calloc(1, sizeof(init_job));
    if (!j) return err_set(e, ERR_NOMEM, "out of memory");
    j->id = *id;
    j->size = t->size;
    j->rank = t->rank;
    j->dev = dev;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, init_main, j)) {
        free(j);
        return err_set(e, ERR_NOMEM, "cannot start a thread");
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_s;
    pthread_mutex_lock(&j->mu);
    while (!j->done)
        if (pthread_cond_timedwait(&j->cv, &j->mu, &dl) == ETIMEDOUT) break;
    const int done = j->done;
    pthread_mutex_unlock(&j->mu);
    if (!done) {
        pthread_detach(th);
        return err_set(e, ERR_UNAVAILABLE, "tensor parallel: NCCL setup did not finish within %d s (a rank is missing "
                                           "or NCCL cannot reach it: see NCCL_DEBUG=INFO)", timeout_s);
    }
    pthread_join(th, NULL);
    const ncclResult_t r = j->res;
    t->comm = j->comm;
    free(j);
    if (r != ncclSuccess) {
        t->comm = NULL;
        return nccl_fail(e, r, "setup (ncclCommInitRank)");
    }
    return 0;
}

// One all-reduce and one logits exchange, run eagerly right after the communicator is
// made: NCCL connects its peers on first use, which must not happen first inside a
// captured decode graph.
int warm_up(tp_ctx *t, err *e) {
    cudaStream_t st;
    CUDA_TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    int rc = 0;
    ncclResult_t r = ncclSuccess;
    if (cudaMemsetAsync(t->d_shard, 0, (size_t)t->vn[t->rank] * 4, st) != cudaSuccess) rc = err_set(e, ERR_IO, "warm-up");
    if (!rc && (r = nc.AllReduce(t->d_shard, t->d_shard, 64, ncclFloat32, ncclSum, t->comm, st)) != ncclSuccess)
        rc = nccl_fail(e, r, "all-reduce (warm-up)");
    if (!rc && t->rank == 0) {
        r = nc.GroupStart();
        for (int q = 1; q < t->size && r == ncclSuccess; q++)
            r = nc.Recv(t->d_recv + (size_t)q * t->S * t->vmax, (size_t)t->vn[q], ncclFloat32, q, t->comm, st);
        ncclResult_t r2 = nc.GroupEnd();
        if (r == ncclSuccess) r = r2;
        if (r != ncclSuccess) rc = nccl_fail(e, r, "receive (warm-up)");
    } else if (!rc && (r = nc.Send(t->d_shard, (size_t)t->vn[t->rank], ncclFloat32, 0, t->comm, st)) != ncclSuccess) {
        rc = nccl_fail(e, r, "send (warm-up)");
    }
    if (!rc) rc = tp_wait(t, st, e);
    cudaStreamDestroy(st);
    return rc;
}

struct ready_msg {
    int32_t code;
    char msg[320];
};

int tp_create(engine **out, const model *m, const engine_opts *o, err *e) {
    *out = NULL;
    int rc = check_par(o, e);
    if (rc) return rc;
    const engine_parallel *P = o->parallel;
    setenv("NCCL_NVLS_ENABLE", "0", 0); // NVLink multicast off unless the operator says otherwise
    if ((rc = nccl_load(P->nccl_lib, e))) return rc;
    if ((rc = shard_check(m, P->size, P->moe_split, e))) return rc;
    tp_engine *T = (tp_engine *)calloc(1, sizeof(tp_engine));
    if (!T) return err_set(e, ERR_NOMEM, "out of memory");
    T->par = *P;
    T->opts = *o;
    T->opts.parallel = &T->par;
    const int size = P->size, rank = P->rank;
    const int cto = P->connect_timeout_s > 0 ? P->connect_timeout_s : 300;
    const int sto = P->step_timeout_s > 0 ? P->step_timeout_s : 30;
    int lfd = -1;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    tpwire_hello mine;
    tpwire_hello_of(&mine, m, rank, size);
    T->ctx = ctx_new(TP_NCCL, size, rank, m->hp.n_vocab, e);
    if (!T->ctx) { rc = ERR_NOMEM; goto fail; }
    T->ctx->step_timeout_ms = sto * 1000;
    if (cudaSetDevice(P->gpu) != cudaSuccess) {
        cudaGetLastError();
        rc = err_set(e, ERR_UNSUPPORTED, "tensor parallel rank %d: CUDA device %d is not usable", rank, P->gpu);
        goto fail;
    }
    if (rank == 0) {
        // the control socket: every peer connects, says who it is, gets the NCCL id
        lfd = tpwire_listen(P->addr, e);
        if (lfd < 0) { rc = e->code; goto fail; }
        fprintf(stderr, "sparkd: tensor parallel: rank 0 of %d waiting on %s for %d peer(s) (up to %d s)\n", size,
                P->addr, size - 1, cto);
        ncclResult_t r = nc.GetUniqueId(&id);
        if (r != ncclSuccess) { rc = nccl_fail(e, r, "ncclGetUniqueId"); goto fail; }
        const double end = now_s() + cto;
        for (int got = 0; got < size - 1;) {
            err ae = {};
            const int left = (int)((end - now_s()) * 1000);
            int fd = left > 0 ? tpwire_accept(lfd, left, &ae) : -1;
            if (fd < 0) {
                int missing = 0;
                for (int q = 1; q < size; q++) missing += T->ctx->fds[q] < 0;
                rc = err_set(e, ERR_UNAVAILABLE, "tensor parallel: %d of %d peer rank(s) did not connect to %s within %d s",
                             missing, size - 1, P->addr, cto);
                goto fail;
            }
            tpwire_hello h;
            uint32_t type = 0, len = 0;
            err he = {};
            if (tpwire_recv(fd, &type, &h, sizeof h, &len, 10000, &he) || type != TPWIRE_HELLO || len != sizeof h ||
                tpwire_hello_check(&mine, &h, &he) || T->ctx->fds[h.rank] >= 0) {
                fprintf(stderr, "sparkd: tensor parallel: refused a connection on %s: %s\n", P->addr,
                        he.code ? he.msg : "not a sparkd rank of this group (or a rank twice)");
                close(fd);
                continue;
            }
            T->ctx->fds[h.rank] = fd;
            got++;
            fprintf(stderr, "sparkd: tensor parallel: rank %u connected\n", h.rank);
        }
        close(lfd);
        lfd = -1;
        tpwire_welcome w;
        memset(&w, 0, sizeof w);
        static_assert(sizeof(ncclUniqueId) == TPWIRE_ID_BYTES, "ncclUniqueId size");
        memcpy(w.nccl_id, &id, sizeof id);
        w.n_ctx = o->n_ctx;
        w.max_seqs = o->max_seqs;
        w.max_tokens = o->max_tokens;
        w.n_kv_blocks = o->n_kv_blocks;
        w.kv_type = (int32_t)o->kv_type;
        w.moe_split = (int32_t)P->moe_split;
        for (int q = 1; q < size; q++)
            if ((rc = tpwire_send(T->ctx->fds[q], TPWIRE_WELCOME, &w, sizeof w, 10000, e))) goto fail;
    } else {
        int fd = tpwire_connect(P->addr, cto * 1000, e);
        if (fd < 0) { rc = e->code; goto fail; }
        T->ctx->fds[0] = fd;
        if ((rc = tpwire_send(fd, TPWIRE_HELLO, &mine, sizeof mine, 10000, e))) goto fail;
        tpwire_welcome w;
        uint32_t type = 0, len = 0;
        if ((rc = tpwire_recv(fd, &type, &w, sizeof w, &len, cto * 1000, e))) {
            err_set(e, (err_code)rc, "tensor parallel: rank 0 refused or did not answer");
            goto fail;
        }
        if (type != TPWIRE_WELCOME || len != sizeof w) {
            rc = err_set(e, ERR_FORMAT, "tensor parallel: rank 0 sent frame %u instead of WELCOME", type);
            goto fail;
        }
        memcpy(&id, w.nccl_id, sizeof id);
        // the engine geometry is rank 0's: the block ids it sends must mean the same here
        T->opts.n_ctx = w.n_ctx;
        T->opts.max_seqs = w.max_seqs;
        T->opts.max_tokens = w.max_tokens;
        T->opts.n_kv_blocks = w.n_kv_blocks;
        T->opts.kv_type = (engine_kv_type)w.kv_type;
        if (w.moe_split != ENGINE_MOE_SPLIT_COLUMNS && w.moe_split != ENGINE_MOE_SPLIT_EXPERTS) {
            rc = err_set(e, ERR_FORMAT, "tensor parallel: rank 0 sent moe_split %d", (int)w.moe_split);
            goto fail;
        }
        if (w.moe_split != (int32_t)P->moe_split)
            fprintf(stderr, "sparkd: tensor parallel rank %d: moe_split %s as rank 0 says (this rank's setting: %s)\n",
                    rank, engine_moe_split_name((engine_moe_split)w.moe_split), engine_moe_split_name(P->moe_split));
        T->par.moe_split = (engine_moe_split)w.moe_split; // the shards must be cut alike
    }
    if ((rc = nccl_init(T->ctx, &id, P->gpu, sto > cto ? sto : cto, e))) goto fail;
    {
        const int V = m->hp.n_vocab;
        if ((rc = shard_open(&T->ctx->sh, m, size, rank, T->par.moe_split, e))) goto fail;
        if ((rc = ctx_alloc(T->ctx, T->opts.max_seqs, T->opts.max_tokens, m->hp.dim, e))) goto fail;
        T->plan_work = T->ctx->bytes;
        if ((rc = warm_up(T->ctx, e))) goto fail;
        engine_opts ro = rank_opts(&T->opts);
        engine_plan pl;
        if ((rc = engine_cuda_ops.plan(shard_model(T->ctx->sh), &ro, &pl, e))) goto fail;
        T->kv_block = pl.kv_block;
        const int max_blocks = (T->opts.n_ctx + pl.kv_block - 1) / pl.kv_block;
        T->lim.max_seqs = T->opts.max_seqs;
        T->lim.max_tokens = T->opts.max_tokens;
        T->lim.max_blocks = max_blocks;
        T->lim.kv_block = pl.kv_block;
        T->lim.n_vocab = V;
        T->lim.n_ctx = T->opts.n_ctx;
        T->stepcap = tpwire_step_cap(T->opts.max_seqs, T->opts.max_tokens, max_blocks);
        T->step = (uint8_t *)malloc(T->stepcap);
        T->seqs = (engine_seq *)calloc((size_t)T->opts.max_seqs, sizeof(engine_seq));
        if (!T->step || !T->seqs) { rc = err_set(e, ERR_NOMEM, "out of memory"); goto fail; }
        rc = cuda_engine_create_rank(&T->inner, shard_model(T->ctx->sh), &ro, T->ctx, e);
    }
    // every rank reports how its engine came up; rank 0 starts only if all did
    if (rank > 0) {
        ready_msg rm;
        memset(&rm, 0, sizeof rm);
        rm.code = rc;
        if (rc) snprintf(rm.msg, sizeof rm.msg, "%s", e->msg);
        err se = {};
        tpwire_send(T->ctx->fds[0], TPWIRE_READY, &rm, sizeof rm, 10000, &se);
        if (rc) goto fail;
    } else {
        if (rc) goto fail;
        for (int q = 1; q < size; q++) {
            ready_msg rm;
            uint32_t type = 0, len = 0;
            err re = {};
            if (tpwire_recv(T->ctx->fds[q], &type, &rm, sizeof rm, &len, cto * 1000, &re) || type != TPWIRE_READY ||
                len != sizeof rm) {
                rc = err_set(e, ERR_UNAVAILABLE, "tensor parallel: rank %d did not report its engine (%s)", q,
                             re.code ? re.msg : "bad frame");
                goto fail;
            }
            rm.msg[sizeof rm.msg - 1] = 0;
            if (rm.code) {
                rc = err_set(e, ERR_UNAVAILABLE, "tensor parallel: rank %d could not create its engine: %s", q, rm.msg);
                goto fail;
            }
        }
        fprintf(stderr, "sparkd: tensor parallel: %d ranks ready (NCCL %s)\n", size, P->addr);
    }
    *out = reinterpret_cast<engine *>(T);
    return 0;
fail:
    if (lfd >= 0) close(lfd);
    fprintf(stderr, "sparkd: tensor parallel rank %d: %s\n", rank, e->msg);
    tp_destroy(reinterpret_cast<engine *>(T));
    return rc ? rc : ERR_IO;
}

int tp_forward(engine *g, const engine_seq *seqs, int n, err *e) {
    tp_engine *T = TE(g);
    if (T->fault) return err_set(e, ERR_UNAVAILABLE, "the tensor-parallel group failed earlier (see the log)");
    if (T->par.rank != 0) return err_set(e, ERR_INVALID, "tensor parallel: only rank 0 drives steps");
    for (int i = 0; i < n; i++)
        if (!seqs[i].tokens || !seqs[i].blocks || seqs[i].n < 1 || seqs[i].pos < 0)
            return err_set(e, ERR_INVALID, "sequence %d is malformed", i);
    size_t len = n >= 1 && n <= T->opts.max_seqs ? tpwire_step_encode(T->step, T->stepcap, seqs, n, T->kv_block) : 0;
    int nd = 0;
    // what the others will decode, checked here first: a batch they would refuse is
    // refused before anyone runs it
    if (!len || tpwire_step_decode(T->step, len, &T->lim, T->seqs, &nd, e))
        return err_set(e, ERR_INVALID, "batch refused (%d sequences)", n);
    for (int q = 1; q < T->par.size; q++) {
        int rc = tpwire_send(T->ctx->fds[q], TPWIRE_STEP, T->step, (uint32_t)len, T->ctx->step_timeout_ms, e);
        if (rc) {
            fprintf(stderr, "sparkd: tensor parallel: rank %d unreachable (%s); the group is stopped\n", q, e->msg);
            T->fault = 1;
            ctx_abort(T->ctx);
            return err_set(e, ERR_UNAVAILABLE, "tensor parallel: rank %d went away", q);
        }
    }
    int rc = engine_cuda_ops.forward(T->inner, seqs, n, e);
    if (rc && rc != ERR_INVALID) T->fault = 1;
    return rc;
}

int tp_slot_reset(engine *g, int slot, const int32_t *tokens, int n, err *e) {
    tp_engine *T = TE(g);
    if (T->fault) return err_set(e, ERR_UNAVAILABLE, "the tensor-parallel group failed earlier (see the log)");
    return engine_cuda_ops.slot_reset(T->inner, slot, tokens, n, e);
}

int tp_slot_accept(engine *g, int slot, int32_t token, err *e) {
    return engine_cuda_ops.slot_accept(TE(g)->inner, slot, token, e);
}

int tp_sample(engine *g, const engine_sample_in *in, int n, engine_sample_out *out, err *e) {
    tp_engine *T = TE(g);
    if (T->fault) return err_set(e, ERR_UNAVAILABLE, "the tensor-parallel group failed earlier (see the log)");
    return engine_cuda_ops.sample(T->inner, in, n, out, e);
}

const float *tp_logits(engine *g, int seq, err *e) { return engine_cuda_ops.logits(TE(g)->inner, seq, e); }

void tp_usage(const engine *g, engine_usage *u) {
    const tp_engine *T = reinterpret_cast<const tp_engine *>(g);
    engine_cuda_ops.usage(T->inner, u);
    u->work_bytes += T->plan_work;
}

} // namespace

extern "C" int engine_tp_follow(engine *g, err *e) {
    tp_engine *T = TE(g);
    if (T->par.rank == 0) return err_set(e, ERR_INVALID, "rank 0 drives; it does not follow");
    const int fd = T->ctx->fds[0];
    uint64_t steps = 0;
    for (;;) {
        uint32_t type = 0, len = 0;
        int rc = tpwire_recv(fd, &type, T->step, (uint32_t)T->stepcap, &len, -1, e);
        if (rc) {
            fprintf(stderr, "sparkd: tensor parallel rank %d: rank 0 went away after %llu steps (%s)\n", T->par.rank,
                    (unsigned long long)steps, e->msg);
            return ERR_UNAVAILABLE;
        }
        if (type == TPWIRE_BYE) {
            fprintf(stderr, "sparkd: tensor parallel rank %d: rank 0 said goodbye after %llu steps\n", T->par.rank,
                    (unsigned long long)steps);
            return 0;
        }
        if (type != TPWIRE_STEP) return err_set(e, ERR_FORMAT, "tensor parallel: unexpected frame %u from rank 0", type);
        int n = 0;
        if ((rc = tpwire_step_decode(T->step, len, &T->lim, T->seqs, &n, e))) return rc;
        rc = engine_cuda_ops.forward(T->inner, T->seqs, n, e);
        if (rc && rc != ERR_INVALID) {
            fprintf(stderr, "sparkd: tensor parallel rank %d: step %llu failed: %s\n", T->par.rank,
                    (unsigned long long)steps, e->msg);
            return rc;
        }
        err_clear(e);
        steps++;
    }
}

extern "C" const engine_ops engine_tp_ops = {
    "cuda-tp",     tp_plan,        tp_create, tp_destroy, tp_forward,
    tp_slot_reset, tp_slot_accept, tp_sample, tp_logits,  tp_usage,
};

// ----------------------------------------------------------------------------- local group

struct tp_local_eng;

namespace {

struct local_rank {
    tp_local_eng *L;
    int r;
    pthread_t th;
};

} // namespace

struct tp_local_eng {
    int size;
    tp_group grp;
    tp_ctx *ctx[ENGINE_PARALLEL_MAX];
    engine *eng[ENGINE_PARALLEL_MAX];
    local_rank lr[ENGINE_PARALLEL_MAX];
    int dev;
    // the job every rank > 0 runs (one at a time)
    pthread_mutex_t mu;
    pthread_cond_t cv, cv_done;
    uint64_t gen;        // job generation
    int pending;         // ranks still running the job
    int quit;
    const engine_seq *seqs;
    int n;
    int rc[ENGINE_PARALLEL_MAX];
    err errs[ENGINE_PARALLEL_MAX];
    int threads;
};

namespace {

tp_local_eng *LE(engine *g) { return reinterpret_cast<tp_local_eng *>(g); }

void *local_main(void *arg) {
    local_rank *me = (local_rank *)arg;
    tp_local_eng *L = me->L;
    cudaSetDevice(L->dev);
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&L->mu);
        while (!L->quit && L->gen == seen) pthread_cond_wait(&L->cv, &L->mu);
        if (L->quit) { pthread_mutex_unlock(&L->mu); return NULL; }
        seen = L->gen;
        const engine_seq *seqs = L->seqs;
        const int n = L->n;
        pthread_mutex_unlock(&L->mu);
        err e = {};
        const int rc = engine_cuda_ops.forward(L->eng[me->r], seqs, n, &e);
        pthread_mutex_lock(&L->mu);
        L->rc[me->r] = rc;
        L->errs[me->r] = e;
        if (--L->pending == 0) pthread_cond_signal(&L->cv_done);
        pthread_mutex_unlock(&L->mu);
    }
}

void local_destroy(engine *g) {
    tp_local_eng *L = LE(g);
    if (!L) return;
    if (L->threads) {
        pthread_mutex_lock(&L->mu);
        L->quit = 1;
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
        for (int r = 1; r <= L->threads; r++) pthread_join(L->lr[r].th, NULL);
    }
    for (int r = 0; r < L->size; r++) {
        if (L->eng[r]) engine_cuda_ops.destroy(L->eng[r]);
        ctx_free(L->ctx[r]);
    }
    for (int r = 0; r < L->size; r++) {
        if (L->grp.ready[r]) cudaEventDestroy(L->grp.ready[r]);
        if (L->grp.done[r]) cudaEventDestroy(L->grp.done[r]);
    }
    pthread_barrier_destroy(&L->grp.bar);
    free(L);
}

int local_plan(const model *m, const engine_opts *o, engine_plan *p, err *e) {
    if (!o->parallel || o->parallel->size < 1) return err_set(e, ERR_INVALID, "tp_local_ops needs engine_opts.parallel");
    shard *sh;
    int rc = shard_open(&sh, m, o->parallel->size, 0, o->parallel->moe_split, e);
    if (rc) return rc;
    engine_opts ro = *o;
    ro.parallel = NULL;
    rc = engine_cuda_ops.plan(shard_model(sh), &ro, p, e); // one rank's share
    shard_free(sh);
    return rc;
}

int local_create(engine **out, const model *m, const engine_opts *o, err *e) {
    *out = NULL;
    if (!o->parallel || o->parallel->size < 1) return err_set(e, ERR_INVALID, "tp_local_ops needs engine_opts.parallel");
    const int size = o->parallel->size;
    int rc = shard_check(m, size, o->parallel->moe_split, e);
    if (rc) return rc;
    tp_local_eng *L = (tp_local_eng *)calloc(1, sizeof(tp_local_eng));
    if (!L) return err_set(e, ERR_NOMEM, "out of memory");
    L->size = size;
    L->dev = o->device;
    L->grp.size = size;
    pthread_barrier_init(&L->grp.bar, NULL, (unsigned)size);
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    pthread_cond_init(&L->cv_done, NULL);
    engine_opts ro = *o;
    ro.parallel = NULL;
    if (cudaSetDevice(o->device) != cudaSuccess) {
        cudaGetLastError();
        local_destroy(reinterpret_cast<engine *>(L));
        return err_set(e, ERR_UNSUPPORTED, "CUDA device %d is not usable", o->device);
    }
    for (int r = 0; r < size && !rc; r++) {
        if (cudaEventCreateWithFlags(&L->grp.ready[r], cudaEventDisableTiming) != cudaSuccess ||
            cudaEventCreateWithFlags(&L->grp.done[r], cudaEventDisableTiming) != cudaSuccess) {
            rc = err_set(e, ERR_IO, "cudaEventCreate");
            break;
        }
        tp_ctx *t = ctx_new(TP_LOCAL, size, r, m->hp.n_vocab, e);
        if (!t) { rc = ERR_NOMEM; break; }
        L->ctx[r] = t;
        t->grp = &L->grp;
        if ((rc = shard_open(&t->sh, m, size, r, o->parallel->moe_split, e))) break;
        if ((rc = ctx_alloc(t, o->max_seqs, o->max_tokens, m->hp.dim, e))) break;
        rc = cuda_engine_create_rank(&L->eng[r], shard_model(t->sh), &ro, t, e);
    }
    for (int r = 1; r < size && !rc; r++) {
        L->lr[r].L = L;
        L->lr[r].r = r;
        if (pthread_create(&L->lr[r].th, NULL, local_main, &L->lr[r])) rc = err_set(e, ERR_NOMEM, "cannot start a thread");
        else L->threads = r;
    }
    if (rc) {
        local_destroy(reinterpret_cast<engine *>(L));
        return rc;
    }
    *out = reinterpret_cast<engine *>(L);
    return 0;
}

int local_forward(engine *g, const engine_seq *seqs, int n, err *e) {
    tp_local_eng *L = LE(g);
    pthread_mutex_lock(&L->mu);
    L->seqs = seqs;
    L->n = n;
    L->pending = L->size - 1;
    L->gen++;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    int rc = engine_cuda_ops.forward(L->eng[0], seqs, n, e);
    pthread_mutex_lock(&L->mu);
    while (L->pending) pthread_cond_wait(&L->cv_done, &L->mu);
    pthread_mutex_unlock(&L->mu);
    for (int r = 1; r < L->size && !rc; r++)
        if (L->rc[r]) rc = err_set(e, (err_code)L->rc[r], "rank %d: %s", r, L->errs[r].msg);
    return rc;
}

int local_slot_reset(engine *g, int slot, const int32_t *tokens, int n, err *e) {
    return engine_cuda_ops.slot_reset(LE(g)->eng[0], slot, tokens, n, e);
}
int local_slot_accept(engine *g, int slot, int32_t token, err *e) {
    return engine_cuda_ops.slot_accept(LE(g)->eng[0], slot, token, e);
}
int local_sample(engine *g, const engine_sample_in *in, int n, engine_sample_out *out, err *e) {
    return engine_cuda_ops.sample(LE(g)->eng[0], in, n, out, e);
}
const float *local_logits(engine *g, int seq, err *e) { return engine_cuda_ops.logits(LE(g)->eng[0], seq, e); }
void local_usage(const engine *g, engine_usage *u) {
    const tp_local_eng *L = reinterpret_cast<const tp_local_eng *>(g);
    engine_cuda_ops.usage(L->eng[0], u);
    u->work_bytes += L->ctx[0]->bytes;
}

} // namespace

extern "C" const engine_ops tp_local_ops = {
    "cuda-tp-local",  local_plan,        local_create, local_destroy, local_forward,
    local_slot_reset, local_slot_accept, local_sample, local_logits,  local_usage,
};
