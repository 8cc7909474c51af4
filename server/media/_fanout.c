/* The native fan-out step: one call per packet from a publisher rewrites the RTP header for every
 * subscriber of the track, protects it with that subscriber's SRTP context and sends it, with no
 * Python object per subscriber per packet.
 *
 * The SRTP contexts are aiortc's own (pylibsrtp's srtp_t, reached through cffi), so the keys DTLS
 * negotiated stay where they are and the Python path and this one share every stream's state.
 * srtp_protect is called through the pointer pylibsrtp exposes: nothing here links libsrtp.
 *
 * Endpoint: one subscriber's track (addresses, SSRC, payload type, offsets, counters).
 * Fanout:   the endpoints one published track feeds; forward() is the hot path.
 */
#define _GNU_SOURCE /* sendmmsg */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RTP_HEADER 12
#define SRTP_TRAILER 144 /* SRTP_MAX_TRAILER_LEN in libsrtp 2 */
#define MAX_RTP 1500     /* a longer packet is refused: the Python path handles it */
#define SLOT (MAX_RTP + SRTP_TRAILER)
#define SEQ_WINDOW 0x4000 /* as server/media/forwarder.py */
#define BATCH 64          /* packets protected, then handed to the kernel in one go */

typedef int (*protect_fn)(void *ctx, void *rtp, int *len);

typedef struct {
    PyObject_HEAD
    PyObject *keepalive; /* the pylibsrtp session that owns ctx */
    void *ctx;
    protect_fn protect;
    int fd; /* a dup of the subscriber's ICE socket: never reused under us while we hold it */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned int ssrc;
    unsigned int payload_type;
    unsigned int seq_offset;
    unsigned int ts_offset;
    unsigned int start_seq;
    unsigned long long packets; /* sent by a Fanout (not by send()) */
    unsigned long long octets;  /* payload bytes of those */
    unsigned long long errors;  /* SRTP or socket errors other than a full socket */
    int congested;              /* a Fanout's send found the socket full: dropped from it */
} Endpoint;

static int parse_address(const char *host, int port, int family, struct sockaddr_storage *out, socklen_t *len)
{
    memset(out, 0, sizeof(*out));
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
            struct in_addr v4; /* a v4 peer on a dual-stack socket */
            if (inet_pton(AF_INET, host, &v4) != 1)
                return -1;
            a->sin6_addr.s6_addr[10] = a->sin6_addr.s6_addr[11] = 0xff;
            memcpy(&a->sin6_addr.s6_addr[12], &v4, 4);
        }
        *len = sizeof(*a);
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)out;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -1;
    *len = sizeof(*a);
    return 0;
}

static int Endpoint_init(Endpoint *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"context", "protect", "keepalive", "fd", "host", "port", "ssrc", "payload_type", NULL};
    unsigned long long ctx, protect;
    PyObject *keepalive;
    int fd, port;
    const char *host;
    unsigned int ssrc, payload_type;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KKOisiII", names, &ctx, &protect, &keepalive, &fd, &host, &port,
                                     &ssrc, &payload_type))
        return -1;
    if (!ctx || !protect) {
        PyErr_SetString(PyExc_ValueError, "no SRTP context");
        return -1;
    }
    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (!*host) /* a connected socket: no address per message */
        self->addrlen = 0;
    else if (parse_address(host, port, local.ss_family, &self->addr, &self->addrlen) != 0) {
        PyErr_Format(PyExc_ValueError, "not an address: %s", host);
        return -1;
    }
    int mine = dup(fd);
    if (mine < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (self->fd >= 0)
        close(self->fd);
    self->fd = mine;
    Py_INCREF(keepalive);
    Py_XSETREF(self->keepalive, keepalive);
    self->ctx = (void *)(uintptr_t)ctx;
    self->protect = (protect_fn)(uintptr_t)protect;
    self->ssrc = ssrc;
    self->payload_type = payload_type & 0x7f;
    return 0;
}

static void Endpoint_close_fd(Endpoint *self)
{
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
}

static void Endpoint_dealloc(Endpoint *self)
{
    Endpoint_close_fd(self);
    Py_XDECREF(self->keepalive);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Endpoint_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Endpoint *self = (Endpoint *)type->tp_alloc(type, 0);
    if (self)
        self->fd = -1;
    return (PyObject *)self;
}

/* Protect ``len`` bytes of RTP in ``buf`` (room for the trailer after them); the SRTP length, or -1. */
static int protect(Endpoint *e, unsigned char *buf, int len)
{
    if (e->protect(e->ctx, buf, &len) != 0) {
        e->errors++;
        return -1;
    }
    return len;
}

static int would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS; }

/* send(packet) -> bool: one whole RTP packet (a retransmission, a replayed picture group). False
 * when the socket is full or gone, as the Python path's sender. */
static PyObject *Endpoint_send(Endpoint *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0)
        return NULL;
    if (view.len > MAX_RTP || view.len < RTP_HEADER) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "an RTP packet of %zd bytes", view.len);
        return NULL;
    }
    unsigned char buf[SLOT];
    memcpy(buf, view.buf, (size_t)view.len);
    int len = (int)view.len;
    PyBuffer_Release(&view);
    if (self->fd < 0)
        Py_RETURN_FALSE;
    len = protect(self, buf, len);
    if (len < 0)
        Py_RETURN_TRUE; /* counted; the packet is lost, as when aiortc's protect fails */
    struct sockaddr *to = self->addrlen ? (struct sockaddr *)&self->addr : NULL;
    if (sendto(self->fd, buf, (size_t)len, MSG_DONTWAIT, to, self->addrlen) < 0) {
        if (would_block(errno))
            Py_RETURN_FALSE;
        self->errors++;
    }
    Py_RETURN_TRUE;
}

static PyObject *Endpoint_close(Endpoint *self, PyObject *unused)
{
    Endpoint_close_fd(self);
    Py_RETURN_NONE;
}

static PyMethodDef Endpoint_methods[] = {
    {"send", (PyCFunction)Endpoint_send, METH_O, "Protect and send one RTP packet; False when the socket is full."},
    {"close", (PyCFunction)Endpoint_close, METH_NOARGS, "Let go of the socket."},
    {NULL},
};

static PyMemberDef Endpoint_members[] = {
    {"ssrc", T_UINT, offsetof(Endpoint, ssrc), 0, "SSRC the subscriber knows"},
    {"payload_type", T_UINT, offsetof(Endpoint, payload_type), 0, "payload type the subscriber negotiated"},
    {"seq_offset", T_UINT, offsetof(Endpoint, seq_offset), 0, "added to the publisher's sequence numbers"},
    {"ts_offset", T_UINT, offsetof(Endpoint, ts_offset), 0, "added to the publisher's timestamps"},
    {"start_seq", T_UINT, offsetof(Endpoint, start_seq), 0, "packets older than this are not forwarded"},
    {"packets", T_ULONGLONG, offsetof(Endpoint, packets), READONLY, "packets a Fanout sent"},
    {"octets", T_ULONGLONG, offsetof(Endpoint, octets), READONLY, "their payload bytes"},
    {"errors", T_ULONGLONG, offsetof(Endpoint, errors), READONLY, "SRTP and socket errors"},
    {"congested", T_INT, offsetof(Endpoint, congested), 0, "dropped from its Fanout: the socket was full"},
    {NULL},
};

static PyTypeObject EndpointType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._fanout.Endpoint",
    .tp_basicsize = sizeof(Endpoint),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Endpoint(context, protect, keepalive, fd, host, port, ssrc, payload_type): one subscriber's track "
              "(host \"\": the socket is connected).",
    .tp_new = Endpoint_new,
    .tp_init = (initproc)Endpoint_init,
    .tp_dealloc = (destructor)Endpoint_dealloc,
    .tp_methods = Endpoint_methods,
    .tp_members = Endpoint_members,
};

/* Fanout ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Endpoint **items;
    Py_ssize_t count, capacity;
    PyObject *dropped; /* endpoints whose socket was full, since the last take_dropped() */
    unsigned char (*slots)[SLOT];
    struct mmsghdr *messages;
    struct iovec *iovecs;
    Endpoint **batch;
} Fanout;

static PyObject *Fanout_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Fanout *self = (Fanout *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->dropped = PyList_New(0);
    self->slots = PyMem_Calloc(BATCH, SLOT);
    self->messages = PyMem_Calloc(BATCH, sizeof(struct mmsghdr));
    self->iovecs = PyMem_Calloc(BATCH, sizeof(struct iovec));
    self->batch = PyMem_Calloc(BATCH, sizeof(Endpoint *));
    if (!self->dropped || !self->slots || !self->messages || !self->iovecs || !self->batch) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void Fanout_dealloc(Fanout *self)
{
    for (Py_ssize_t i = 0; i < self->count; i++)
        Py_DECREF(self->items[i]);
    PyMem_Free(self->items);
    PyMem_Free(self->slots);
    PyMem_Free(self->messages);
    PyMem_Free(self->iovecs);
    PyMem_Free(self->batch);
    Py_XDECREF(self->dropped);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Fanout_add(Fanout *self, PyObject *arg)
{
    if (!PyObject_TypeCheck(arg, &EndpointType)) {
        PyErr_SetString(PyExc_TypeError, "an Endpoint");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->count; i++)
        if ((PyObject *)self->items[i] == arg)
            Py_RETURN_NONE;
    if (self->count == self->capacity) {
        Py_ssize_t capacity = self->capacity ? self->capacity * 2 : 8;
        Endpoint **items = PyMem_Realloc(self->items, (size_t)capacity * sizeof(Endpoint *));
        if (!items)
            return PyErr_NoMemory();
        self->items = items;
        self->capacity = capacity;
    }
    Py_INCREF(arg);
    self->items[self->count++] = (Endpoint *)arg;
    ((Endpoint *)arg)->congested = 0;
    Py_RETURN_NONE;
}

static PyObject *Fanout_remove(Fanout *self, PyObject *arg)
{
    for (Py_ssize_t i = 0; i < self->count; i++) {
        if ((PyObject *)self->items[i] == arg) {
            memmove(&self->items[i], &self->items[i + 1], (size_t)(self->count - i - 1) * sizeof(Endpoint *));
            self->count--;
            Py_DECREF(arg);
            break;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Fanout_clear(Fanout *self, PyObject *unused)
{
    while (self->count > 0)
        Py_DECREF(self->items[--self->count]);
    Py_RETURN_NONE;
}

static PyObject *Fanout_take_dropped(Fanout *self, PyObject *unused)
{
    PyObject *taken = self->dropped;
    self->dropped = PyList_New(0);
    if (!self->dropped) {
        self->dropped = taken;
        return NULL;
    }
    return taken;
}

/* Hand a batch to the kernel: one sendmmsg per run of messages on the same socket. A message the
 * kernel refuses because the socket is full marks its endpoint congested. Returns the number sent. */
static Py_ssize_t flush(Fanout *self, int n, Py_ssize_t octets, int *congested)
{
    Py_ssize_t sent = 0;
    int start = 0;
    while (start < n) {
        int fd = self->batch[start]->fd, run = 1;
        while (start + run < n && self->batch[start + run]->fd == fd)
            run++;
        int done = 0;
        while (done < run) {
            /* The GIL stays held: a non-blocking send returns at once, and handing the GIL to
             * another thread a hundred times per packet costs more than the sends. */
            int r = sendmmsg(fd, &self->messages[start + done], (unsigned int)(run - done), MSG_DONTWAIT);
            if (r > 0) {
                for (int k = start + done; k < start + done + r; k++) {
                    Endpoint *e = self->batch[k];
                    e->packets++;
                    e->octets += (unsigned long long)octets;
                }
                sent += r;
                done += r;
                continue;
            }
            Endpoint *e = self->batch[start + done]; /* the first one not sent */
            if (would_block(errno))
                e->congested = *congested = 1;
            else
                e->errors++;
            done++;
        }
        start += run;
    }
    return sent;
}

/* Remove the endpoints a flush found congested, and queue them for take_dropped(). */
static int drop_congested(Fanout *self)
{
    Py_ssize_t kept = 0;
    int status = 0;
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Endpoint *e = self->items[i];
        if (!e->congested) {
            self->items[kept++] = e;
            continue;
        }
        if (PyList_Append(self->dropped, (PyObject *)e) != 0)
            status = -1;
        Py_DECREF(e);
    }
    self->count = kept;
    return status;
}

/* forward(seq, ts, marker, payload) -> packets sent. The same translation as DownTrack.forward for
 * a started subscriber: skip what is older than its floor, move the floor along, rewrite, send. */
static PyObject *Fanout_forward(Fanout *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "forward(seq, ts, marker, payload)");
        return NULL;
    }
    unsigned long seq = PyLong_AsUnsignedLongMask(args[0]) & 0xffff;
    unsigned long ts = PyLong_AsUnsignedLongMask(args[1]) & 0xffffffff;
    int marker = PyObject_IsTrue(args[2]);
    if (PyErr_Occurred() || marker < 0)
        return NULL;
    Py_buffer payload;
    if (PyObject_GetBuffer(args[3], &payload, PyBUF_SIMPLE) != 0)
        return NULL;
    if (payload.len + RTP_HEADER > MAX_RTP) {
        PyBuffer_Release(&payload);
        PyErr_Format(PyExc_ValueError, "a payload of %zd bytes", payload.len);
        return NULL;
    }
    int length = RTP_HEADER + (int)payload.len;
    Py_ssize_t sent = 0;
    int n = 0, congested = 0;
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Endpoint *e = self->items[i];
        unsigned int ahead = (unsigned int)(seq - e->start_seq) & 0xffff;
        if (ahead >= 0x8000)
            continue; /* older than where this subscriber started */
        if (ahead > SEQ_WINDOW)
            e->start_seq = (unsigned int)(seq - SEQ_WINDOW / 2) & 0xffff;
        unsigned char *buf = self->slots[n];
        unsigned int out_seq = (unsigned int)(seq + e->seq_offset) & 0xffff;
        uint32_t out_ts = (uint32_t)(ts + e->ts_offset);
        uint32_t ssrc = e->ssrc;
        buf[0] = 0x80;
        buf[1] = (unsigned char)((marker ? 0x80 : 0) | e->payload_type);
        buf[2] = (unsigned char)(out_seq >> 8);
        buf[3] = (unsigned char)out_seq;
        buf[4] = (unsigned char)(out_ts >> 24);
        buf[5] = (unsigned char)(out_ts >> 16);
        buf[6] = (unsigned char)(out_ts >> 8);
        buf[7] = (unsigned char)out_ts;
        buf[8] = (unsigned char)(ssrc >> 24);
        buf[9] = (unsigned char)(ssrc >> 16);
        buf[10] = (unsigned char)(ssrc >> 8);
        buf[11] = (unsigned char)ssrc;
        memcpy(buf + RTP_HEADER, payload.buf, (size_t)payload.len);
        int len = protect(e, buf, length);
        if (len < 0)
            continue;
        self->iovecs[n].iov_base = buf;
        self->iovecs[n].iov_len = (size_t)len;
        struct msghdr *m = &self->messages[n].msg_hdr;
        m->msg_name = e->addrlen ? &e->addr : NULL;
        m->msg_namelen = e->addrlen;
        m->msg_iov = &self->iovecs[n];
        m->msg_iovlen = 1;
        self->batch[n] = e;
        if (++n == BATCH) {
            sent += flush(self, n, payload.len, &congested);
            n = 0;
        }
    }
    if (n)
        sent += flush(self, n, payload.len, &congested);
    PyBuffer_Release(&payload);
    if (congested && drop_congested(self) != 0)
        return NULL;
    return PyLong_FromSsize_t(sent);
}

static PyObject *Fanout_len_get(Fanout *self, void *closure) { return PyLong_FromSsize_t(self->count); }

static PyObject *Fanout_has_dropped(Fanout *self, void *closure)
{
    return PyBool_FromLong(PyList_GET_SIZE(self->dropped) > 0);
}

static PyMethodDef Fanout_methods[] = {
    {"add", (PyCFunction)Fanout_add, METH_O, "Feed this endpoint from now on."},
    {"remove", (PyCFunction)Fanout_remove, METH_O, "Stop feeding this endpoint."},
    {"clear", (PyCFunction)Fanout_clear, METH_NOARGS, "Stop feeding every endpoint."},
    {"take_dropped", (PyCFunction)Fanout_take_dropped, METH_NOARGS, "Endpoints dropped for a full socket."},
    {"forward", (PyCFunction)(void (*)(void))Fanout_forward, METH_FASTCALL,
     "forward(seq, ts, marker, payload) -> packets sent, to every endpoint."},
    {NULL},
};

static PyGetSetDef Fanout_getset[] = {
    {"size", (getter)Fanout_len_get, NULL, "endpoints fed", NULL},
    {"has_dropped", (getter)Fanout_has_dropped, NULL, "whether take_dropped() has something", NULL},
    {NULL},
};

static PyTypeObject FanoutType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._fanout.Fanout",
    .tp_basicsize = sizeof(Fanout),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The endpoints one published track feeds.",
    .tp_new = Fanout_new,
    .tp_dealloc = (destructor)Fanout_dealloc,
    .tp_methods = Fanout_methods,
    .tp_getset = Fanout_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout", "The native fan-out step (see server/media/native.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__fanout(void)
{
    if (PyType_Ready(&EndpointType) < 0 || PyType_Ready(&FanoutType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&EndpointType);
    Py_INCREF(&FanoutType);
    if (PyModule_AddObject(m, "Endpoint", (PyObject *)&EndpointType) < 0 ||
        PyModule_AddObject(m, "Fanout", (PyObject *)&FanoutType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
