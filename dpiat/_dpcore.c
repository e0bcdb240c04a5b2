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

static PyMethodDef methods[] = {
    {"dp", dp, METH_VARARGS, "dp(scores, n, m, div) -> (value, back): the DPIAT alignment DP."},
    {"dp_pairs", dp_pairs, METH_VARARGS,
     "dp_pairs(M, nx, xidx, xoff, yidx, yoff, div) -> float64 bytes: DP values of many leaf-block pairs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dpcore", NULL, -1, methods};

PyMODINIT_FUNC PyInit__dpcore(void) { return PyModule_Create(&module); }
