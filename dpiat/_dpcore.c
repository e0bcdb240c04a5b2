/* The DPIAT alignment DP (docs/method.md, section 4) in C: the same float64 operations, in the same order,
 * as the pure-Python reference in dpiat/alignment.py (`_dp_python`), so values and decisions are identical.
 * Built as an optional extension; dpiat falls back to the Python version when it is missing.
 *
 * dp(scores, n, m, div) -> (value, back)
 *   scores: float64[n*m], scores[(i-1)*m + (j-1)] = score(source j, target i)
 *   div:    float64[>= n+1], div[L] = L ** 0.5 computed by Python (so the divisors are Python's)
 *   back:   bytes holding int32[(n+1)*(m+1)]: -1 skip target, -2 skip source, k >= 1 run T_k..T_i.
 *
 * dp_pairs(M, nx, xidx, xoff, yidx, yoff, div) -> bytes holding float64[nyb*nxb]
 *   The values of many DPs at once (no backtracking), one per (target block b, source block a) whose items
 *   are all leaves: out[b*nxb + a] = dp(S)[0] with S[(i-1)*m + (j-1)] = M[yidx[yoff[b]+i-1]*nx + xidx[xoff[a]+j-1]]
 *   M:    float64[NY*nx], the leaf scores, target leaf major
 *   xidx: int32 source leaf indices of all source blocks, concatenated; xoff: int32[nxb+1] their offsets
 *   yidx, yoff: the same for the target blocks; div as for dp, >= (longest target block + 1) entries.
 *   Each DP is the very same code as dp's on the same float64 scores, so its value is bit-identical.
 *
 * leaf_scores(dims, ndim, masks, nx) -> bytes holding float64[(n - nx) * nx], or None
 *   The shape scores of every (source leaf s < nx, target leaf t >= nx) pair of n leaves, target major:
 *   out[(t - nx) * nx + s]. dims: int64, the weight shapes concatenated; ndim, masks: int64[n], each
 *   leaf's number of dimensions and PARAM type mask. Exactly dpiat.layers.shape_score (0 when the masks do
 *   not meet): r = 1.0, then per dimension both shapes have, in order, 0 if either size is 0, else
 *   r *= min(a / b, b / a), with a and b converted to double exactly (None when a size is negative or
 *   2**53 or more, which the caller leaves to the Python path).
 *
 * clip_copy(spec[, stream_bytes, stream_run, line]) -> elements written
 *   The centre clip copies of dpiat/clip.py (`_clip_copy`), done in order, as byte copies between contiguous
 *   CPU tensors of the same dtype (the caller checks that and passes raw pointers). spec: int64, per copy
 *   [dst address, src address, itemsize, ndim, src shape[ndim], dst shape[ndim]]. Per dimension a smaller
 *   source lands in the centre of the target, a larger one is centre cropped ((a - b) // 2), equal sizes are
 *   copied as they are: the windows of clip_windows. A tensor pair whose memory overlaps is copied with
 *   memmove, run by run in the same order. Copies of at least CLIP_STREAM_BYTES (any size by default) whose
 *   contiguous runs have at least CLIP_STREAM_RUN bytes use non-temporal stores (x86 SSE2) for the whole
 *   64-byte cache lines of each run (the partial lines at its two ends get ordinary stores): the same bytes,
 *   written without first pulling the target's lines into the cache. Partial-line streaming stores are
 *   slow, so runs too short to hold whole lines are not streamed. The three optional arguments override
 *   CLIP_STREAM_BYTES, CLIP_STREAM_RUN and the line size (16, 32 or 64; bench/measure/copy_stream.py compares
 *   settings).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The DP proper. D: zeroed float64[(n+1)*(m+1)]; back: zeroed int32[(n+1)*(m+1)], or NULL for the value only. */
static void dp_core(const double *s, Py_ssize_t n, Py_ssize_t m, const double *div, double *D, int32_t *back) {
    const Py_ssize_t W = m + 1;
    for (Py_ssize_t i = 1; i <= n; ++i) {
        for (Py_ssize_t j = 1; j <= m; ++j) {
            double up = D[(i - 1) * W + j], left = D[i * W + j - 1], best;
            int32_t b;
            if (up > left) { best = up; b = -1; } else { best = left; b = -2; }
            double acc = 0.0;
            for (Py_ssize_t k = i; k >= 1; --k) {
                acc += s[(k - 1) * m + (j - 1)];
                double v = D[(k - 1) * W + (j - 1)] + acc / div[i - k + 1];
                if (v > best) { best = v; b = (int32_t)k; }
            }
            D[i * W + j] = best;
            if (back != NULL) back[i * W + j] = b;
        }
    }
}

static PyObject *dp(PyObject *self, PyObject *args) {
    Py_buffer sb, db;
    Py_ssize_t n, m;
    if (!PyArg_ParseTuple(args, "y*nny*", &sb, &n, &m, &db)) return NULL;
    if (n < 0 || m < 0 || sb.len < (Py_ssize_t)(n * m * sizeof(double)) ||
        db.len < (Py_ssize_t)((n + 1) * sizeof(double))) {
        PyBuffer_Release(&sb); PyBuffer_Release(&db);
        PyErr_SetString(PyExc_ValueError, "dp: buffer sizes do not match n and m");
        return NULL;
    }
    const double *s = (const double *)sb.buf, *div = (const double *)db.buf;
    const Py_ssize_t W = m + 1;
    double *D = (double *)calloc((size_t)((n + 1) * W), sizeof(double));
    PyObject *backobj = PyBytes_FromStringAndSize(NULL, (n + 1) * W * (Py_ssize_t)sizeof(int32_t));
    if (D == NULL || backobj == NULL) {
        free(D); Py_XDECREF(backobj); PyBuffer_Release(&sb); PyBuffer_Release(&db);
        return PyErr_NoMemory();
    }
    int32_t *back = (int32_t *)PyBytes_AS_STRING(backobj);
    memset(back, 0, (size_t)((n + 1) * W) * sizeof(int32_t));
    dp_core(s, n, m, div, D, back);
    double value = D[n * W + m];
    free(D);
    PyBuffer_Release(&sb); PyBuffer_Release(&db);
    return Py_BuildValue("(dN)", value, backobj);
}

static PyObject *dp_pairs(PyObject *self, PyObject *args) {
    Py_buffer mb, xib, xob, yib, yob, db;
    Py_ssize_t nx;
    if (!PyArg_ParseTuple(args, "y*ny*y*y*y*y*", &mb, &nx, &xib, &xob, &yib, &yob, &db)) return NULL;
    PyObject *result = NULL;
    double *D = NULL, *S = NULL;
    const double *M = (const double *)mb.buf, *div = (const double *)db.buf;
    const int32_t *xi = (const int32_t *)xib.buf, *xo = (const int32_t *)xob.buf;
    const int32_t *yi = (const int32_t *)yib.buf, *yo = (const int32_t *)yob.buf;
    Py_ssize_t nM = mb.len / (Py_ssize_t)sizeof(double), ndiv = db.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t nxi = xib.len / 4, nyi = yib.len / 4, nxb = xob.len / 4 - 1, nyb = yob.len / 4 - 1;
    Py_ssize_t maxm = 0, maxn = 0;
    const char *bad = NULL;
    if (nx <= 0 || nxb < 0 || nyb < 0 || nM % nx != 0) bad = "dp_pairs: bad sizes";
    Py_ssize_t NY = bad ? 0 : nM / nx;
    for (Py_ssize_t a = 0; !bad && a < nxb; ++a) {
        if (xo[a] < 0 || xo[a + 1] < xo[a] || xo[a + 1] > nxi) bad = "dp_pairs: bad source offsets";
        else if (xo[a + 1] - xo[a] > maxm) maxm = xo[a + 1] - xo[a];
    }
    for (Py_ssize_t b = 0; !bad && b < nyb; ++b) {
        if (yo[b] < 0 || yo[b + 1] < yo[b] || yo[b + 1] > nyi) bad = "dp_pairs: bad target offsets";
        else if (yo[b + 1] - yo[b] > maxn) maxn = yo[b + 1] - yo[b];
    }
    for (Py_ssize_t q = 0; !bad && q < nxi; ++q) if (xi[q] < 0 || xi[q] >= nx) bad = "dp_pairs: source index out of range";
    for (Py_ssize_t q = 0; !bad && q < nyi; ++q) if (yi[q] < 0 || yi[q] >= NY) bad = "dp_pairs: target index out of range";
    if (!bad && ndiv < maxn + 1) bad = "dp_pairs: too few divisors";
    if (bad) { PyErr_SetString(PyExc_ValueError, bad); goto done; }
    result = PyBytes_FromStringAndSize(NULL, (nxb * nyb > 0 ? nxb * nyb : 0) * (Py_ssize_t)sizeof(double));
    D = (double *)malloc((size_t)((maxn + 1) * (maxm + 1)) * sizeof(double));
    S = (double *)malloc((size_t)(maxn * maxm + 1) * sizeof(double));
    if (result == NULL || D == NULL || S == NULL) { Py_CLEAR(result); PyErr_NoMemory(); goto done; }
    double *out = (double *)PyBytes_AS_STRING(result);
    for (Py_ssize_t b = 0; b < nyb; ++b) {
        const Py_ssize_t n = yo[b + 1] - yo[b];
        for (Py_ssize_t a = 0; a < nxb; ++a) {
            const Py_ssize_t m = xo[a + 1] - xo[a];
            for (Py_ssize_t i = 0; i < n; ++i) {
                const double *row = M + (Py_ssize_t)yi[yo[b] + i] * nx;
                for (Py_ssize_t j = 0; j < m; ++j) S[i * m + j] = row[xi[xo[a] + j]];
            }
            memset(D, 0, (size_t)((n + 1) * (m + 1)) * sizeof(double));
            dp_core(S, n, m, div, D, NULL);
            out[b * nxb + a] = D[n * (m + 1) + m];
        }
    }
done:
    free(D); free(S);
    PyBuffer_Release(&mb); PyBuffer_Release(&xib); PyBuffer_Release(&xob);
    PyBuffer_Release(&yib); PyBuffer_Release(&yob); PyBuffer_Release(&db);
    return result;
}

static PyObject *leaf_scores(PyObject *self, PyObject *args) {
    Py_buffer db, nb, mb;
    Py_ssize_t nx;
    if (!PyArg_ParseTuple(args, "y*y*y*n", &db, &nb, &mb, &nx)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t *off = NULL;
    const int64_t *dims = (const int64_t *)db.buf, *ndim = (const int64_t *)nb.buf, *mask = (const int64_t *)mb.buf;
    const Py_ssize_t nd = db.len / 8, n = nb.len / 8;
    if (mb.len / 8 != n || nx < 0 || nx > n) {
        PyErr_SetString(PyExc_ValueError, "leaf_scores: bad sizes");
        goto done;
    }
    off = (Py_ssize_t *)malloc((size_t)(n + 1) * sizeof(Py_ssize_t));
    if (off == NULL) { PyErr_NoMemory(); goto done; }
    off[0] = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        if (ndim[i] < 0 || off[i] + ndim[i] > nd) { PyErr_SetString(PyExc_ValueError, "leaf_scores: bad ndim"); goto done; }
        off[i + 1] = off[i] + ndim[i];
    }
    if (off[n] != nd) { PyErr_SetString(PyExc_ValueError, "leaf_scores: dims and ndim disagree"); goto done; }
    for (Py_ssize_t q = 0; q < nd; ++q) {
        if (dims[q] < 0 || dims[q] >= ((int64_t)1 << 53)) { result = Py_None; Py_INCREF(result); goto done; }
    }
    result = PyBytes_FromStringAndSize(NULL, (n - nx) * nx * (Py_ssize_t)sizeof(double));
    if (result == NULL) goto done;
    double *out = (double *)PyBytes_AS_STRING(result);
    for (Py_ssize_t t = nx; t < n; ++t) {
        const int64_t *b = dims + off[t];
        for (Py_ssize_t x = 0; x < nx; ++x) {
            double r = 0.0;
            if (mask[x] & mask[t]) {
                const int64_t *a = dims + off[x];
                const int64_t k = ndim[x] < ndim[t] ? ndim[x] : ndim[t];
                r = 1.0;
                for (int64_t d = 0; d < k; ++d) {
                    if (a[d] == 0 || b[d] == 0) { r = 0.0; break; }
                    const double p = (double)a[d] / (double)b[d], q = (double)b[d] / (double)a[d];
                    r *= (q < p) ? q : p;  /* Python's min(p, q): the first unless the second is smaller */
                }
            }
            out[(t - nx) * nx + x] = r;
        }
    }
done:
    free(off);
    PyBuffer_Release(&db); PyBuffer_Release(&nb); PyBuffer_Release(&mb);
    return result;
}


#define CLIP_MAXDIM 16
#define CLIP_STREAM_BYTES 0   /* copies writing at least this much bypass the cache ... */
#define CLIP_STREAM_RUN 256   /* ... when each of their contiguous runs has this many bytes */

#if defined(__SSE2__)
#include <emmintrin.h>
/* memcpy with non-temporal stores for the whole 64-byte lines of the target range (ordinary stores for the
   partial lines at both ends): the same bytes, without reading the target's cache lines first */
static void copy_stream(char *d, const char *s, size_t n, size_t line) {
    size_t head = (size_t)(-(uintptr_t)d & (line - 1));
    if (head > n) head = n;
    memcpy(d, s, head);
    d += head; s += head; n -= head;
    for (; n >= 64; d += 64, s += 64, n -= 64) {
        __m128i x0 = _mm_loadu_si128((const __m128i *)s), x1 = _mm_loadu_si128((const __m128i *)(s + 16));
        __m128i x2 = _mm_loadu_si128((const __m128i *)(s + 32)), x3 = _mm_loadu_si128((const __m128i *)(s + 48));
        _mm_stream_si128((__m128i *)d, x0); _mm_stream_si128((__m128i *)(d + 16), x1);
        _mm_stream_si128((__m128i *)(d + 32), x2); _mm_stream_si128((__m128i *)(d + 48), x3);
    }
    memcpy(d, s, n);
}
#define CLIP_FENCE() _mm_sfence()
#else
static void copy_stream(char *d, const char *s, size_t n, size_t line) { (void)line; memcpy(d, s, n); }
#define CLIP_FENCE() ((void)0)
#endif

static PyObject *clip_copy(PyObject *self, PyObject *args) {
    Py_buffer sb;
    long long stream_bytes = CLIP_STREAM_BYTES, stream_run = CLIP_STREAM_RUN, line = 64;
    if (!PyArg_ParseTuple(args, "y*|LLL", &sb, &stream_bytes, &stream_run, &line)) return NULL;
    if (line < 16 || line > 64 || (line & (line - 1)) != 0) {
        PyBuffer_Release(&sb);
        PyErr_SetString(PyExc_ValueError, "clip_copy: line must be 16, 32 or 64");
        return NULL;
    }
    const int64_t *q = (const int64_t *)sb.buf;
    const Py_ssize_t len = sb.len / (Py_ssize_t)sizeof(int64_t);
    long long total = 0;
    const char *bad = NULL;
    Py_ssize_t p = 0;
    /* validate everything first: nothing is written when the spec is malformed */
    while (p < len) {
        if (p + 4 > len) { bad = "clip_copy: truncated spec"; break; }
        int64_t itemsize = q[p + 2], nd = q[p + 3];
        if (itemsize <= 0 || nd < 0 || nd > CLIP_MAXDIM || p + 4 + 2 * nd > len) { bad = "clip_copy: bad spec"; break; }
        for (int64_t d = 0; d < 2 * nd; ++d) if (q[p + 4 + d] < 0) bad = "clip_copy: negative size";
        if (bad) break;
        p += 4 + 2 * nd;
    }
    if (bad) { PyBuffer_Release(&sb); PyErr_SetString(PyExc_ValueError, bad); return NULL; }
    int streamed = 0;
    Py_BEGIN_ALLOW_THREADS
    p = 0;
    while (p < len) {
        char *dst = (char *)(intptr_t)q[p];
        const char *src = (const char *)(intptr_t)q[p + 1];
        const int64_t itemsize = q[p + 2], nd = q[p + 3];
        const int64_t *a = q + p + 4, *b = q + p + 4 + nd;
        p += 4 + 2 * nd;
        int64_t cnt[CLIP_MAXDIM], sa[CLIP_MAXDIM], sd[CLIP_MAXDIM], idx[CLIP_MAXDIM];
        int64_t na = 1, nb = 1, numel = 1, soff = 0, doff = 0;
        for (int64_t d = nd - 1; d >= 0; --d) {  /* contiguous strides, in elements */
            sa[d] = na; sd[d] = nb; na *= a[d]; nb *= b[d];
        }
        int64_t k = -1;  /* the last dimension whose sizes differ */
        for (int64_t d = 0; d < nd; ++d) {
            int64_t c = a[d] < b[d] ? a[d] : b[d];
            cnt[d] = c; numel *= c;
            if (a[d] < b[d]) { doff += (b[d] - a[d]) / 2 * sd[d]; k = d; }
            else if (a[d] > b[d]) { soff += (a[d] - b[d]) / 2 * sa[d]; k = d; }
        }
        if (numel == 0) continue;
        total += numel;
        /* one run: dimension k (partial) and all full dimensions after it are contiguous on both sides */
        int64_t run = 1;
        for (int64_t d = (k < 0 ? 0 : k); d < nd; ++d) run *= cnt[d];
        const size_t runb = (size_t)(run * itemsize);
        const int overlap = dst < src + na * itemsize && src < dst + nb * itemsize;
        const int stream = !overlap && numel * itemsize >= stream_bytes && (long long)runb >= stream_run;
        streamed |= stream;
        char *dp0 = dst + doff * itemsize;
        const char *sp0 = src + soff * itemsize;
        if (k <= 0) {  /* a single run */
            if (overlap) memmove(dp0, sp0, runb); else if (stream) copy_stream(dp0, sp0, runb, (size_t)line); else memcpy(dp0, sp0, runb);
            continue;
        }
        for (int64_t d = 0; d < k; ++d) idx[d] = 0;
        for (;;) {
            int64_t so = 0, doo = 0;
            for (int64_t d = 0; d < k; ++d) { so += idx[d] * sa[d]; doo += idx[d] * sd[d]; }
            if (overlap) memmove(dp0 + doo * itemsize, sp0 + so * itemsize, runb);
            else if (stream) copy_stream(dp0 + doo * itemsize, sp0 + so * itemsize, runb, (size_t)line);
            else memcpy(dp0 + doo * itemsize, sp0 + so * itemsize, runb);
            int64_t d = k - 1;
            while (d >= 0 && ++idx[d] == cnt[d]) idx[d--] = 0;
            if (d < 0) break;
        }
    }
    if (streamed) CLIP_FENCE();  /* the streamed stores are visible before this returns */
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&sb);
    return PyLong_FromLongLong(total);
}

static PyMethodDef methods[] = {
    {"dp", dp, METH_VARARGS, "dp(scores, n, m, div) -> (value, back): the DPIAT alignment DP."},
    {"dp_pairs", dp_pairs, METH_VARARGS,
     "dp_pairs(M, nx, xidx, xoff, yidx, yoff, div) -> float64 bytes: DP values of many leaf-block pairs."},
    {"leaf_scores", leaf_scores, METH_VARARGS,
     "leaf_scores(dims, ndim, masks, nx) -> float64 bytes (target major) or None: shape scores of all leaf pairs."},
    {"clip_copy", clip_copy, METH_VARARGS,
     "clip_copy(spec[, stream_bytes, stream_run, line]) -> elements written: centre clip byte copies between "
     "contiguous tensors (raw addresses)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dpcore", NULL, -1, methods};

PyMODINIT_FUNC PyInit__dpcore(void) { return PyModule_Create(&module); }
