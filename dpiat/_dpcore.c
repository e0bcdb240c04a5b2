/* The DPIAT alignment DP (docs/method.md, section 4) in C: the same float64 operations, in the same order,
 * as the pure-Python reference in dpiat/alignment.py (`_dp_python`), so values and decisions are identical.
 * Built as an optional extension; dpiat falls back to the Python version when it is missing.
 *
 * dp(scores, n, m, div) -> (value, back)
 *   scores: float64[n*m], scores[(i-1)*m + (j-1)] = score(source j, target i)
 *   div:    float64[>= n+1], div[L] = L ** 0.5 computed by Python (so the divisors are Python's)
 *   back:   bytes holding int32[(n+1)*(m+1)]: -1 skip target, -2 skip source, k >= 1 run T_k..T_i.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
            back[i * W + j] = b;
        }
    }
    double value = D[n * W + m];
    free(D);
    PyBuffer_Release(&sb); PyBuffer_Release(&db);
    return Py_BuildValue("(dN)", value, backobj);
}

static PyMethodDef methods[] = {
    {"dp", dp, METH_VARARGS, "dp(scores, n, m, div) -> (value, back): the DPIAT alignment DP."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dpcore", NULL, -1, methods};

PyMODINIT_FUNC PyInit__dpcore(void) { return PyModule_Create(&module); }
