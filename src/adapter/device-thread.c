/* SPDX-License-Identifier: MIT */
/* Owns the worker thread of a blocking driver: the hand-over of one request at a time, the eventfd that
 * brings its result back to the loop, and the driver's open state, which only the thread touches. */

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "device-thread.h"
#include "log.h"

struct DeviceThread {
        const DeviceThreadDriver *driver;
        const DeviceOptions *options;

        pthread_t thread;
        bool thread_started;
        bool lock_initialized;
        pthread_mutex_t lock;
        pthread_cond_t cond;

        /* Under lock. */
        const DeviceRequest *handed;    /* for the worker to run */
        bool finished;                  /* the worker is done with `handed`: result holds what it found */
        bool quit;
        void *state;                    /* written by the worker only: NULL until open */
        bool have_pending_fault;        /* injected before the driver was open: applied once it is */
        DeviceFault pending_fault;
        unsigned pending_fault_count;
        DeviceResult result;

        /* Loop thread only. */
        const DeviceRequest *current;   /* started and not yet done */
        DeviceDriverDone done;
        void *userdata;

        int event_fd;
        sd_event_source *event_source;
};

static void worker_run(DeviceThread *t, const DeviceRequest *req, DeviceResult *result) {
        DeviceFault fault = DEVICE_FAULT_NONE;
        void *state;
        int r;

        *result = (DeviceResult) {};

        pthread_mutex_lock(&t->lock);
        state = t->state;
        pthread_mutex_unlock(&t->lock);

        if (req->op == DEVICE_OP_OPEN) {
                if (!state) {
                        r = t->driver->open(&state, t->options, &fault);
                        if (r < 0) {
                                result->error = r;
                                result->fault = fault == DEVICE_FAULT_NONE ? DEVICE_FAULT_ERROR : fault;
                                return;
                        }
                        pthread_mutex_lock(&t->lock);
                        t->state = state;
                        if (t->have_pending_fault && t->driver->inject_fault)
                                (void) t->driver->inject_fault(state, t->pending_fault, t->pending_fault_count);
                        t->have_pending_fault = false;
                        pthread_mutex_unlock(&t->lock);
                }
                t->driver->run(state, &(DeviceRequest) { .op = DEVICE_OP_STATUS }, result);
                return;
        }

        if (!state) {
                result->error = -ENOTCONN;
                result->fault = DEVICE_FAULT_NOT_CONNECTED;
                return;
        }
        t->driver->run(state, req, result);
        if (result->error >= 0)
                result->fault = DEVICE_FAULT_NONE;
        else if (result->fault == DEVICE_FAULT_NONE && result->error != -ENOENT && result->error != -EALREADY)
                /* A failure that names no fault and is not an answer ("no such document") is the driver's. */
                result->fault = DEVICE_FAULT_ERROR;
}

static void *worker_main(void *userdata) {
        DeviceThread *t = userdata;
        void *state;

        for (;;) {
                const DeviceRequest *req;
                DeviceResult result;

                pthread_mutex_lock(&t->lock);
                while ((!t->handed || t->finished) && !t->quit)
                        pthread_cond_wait(&t->cond, &t->lock);
                /* A request already handed over runs even when told to quit: it was sent. */
                req = t->handed && !t->finished ? t->handed : NULL;
                pthread_mutex_unlock(&t->lock);

                if (!req)
                        break;

                worker_run(t, req, &result);

                pthread_mutex_lock(&t->lock);
                t->result = result;
                t->finished = true;
                pthread_mutex_unlock(&t->lock);
                (void) !write(t->event_fd, &(uint64_t) { 1 }, sizeof(uint64_t));
        }

        pthread_mutex_lock(&t->lock);
        state = TAKE_PTR(t->state);
        pthread_mutex_unlock(&t->lock);
        if (state)
                t->driver->close(state);
        return NULL;
}

/* Takes the finished request back and calls its done. */
static void device_thread_collect(DeviceThread *t) {
        DeviceDriverDone done;
        DeviceResult result;
        void *userdata;

        pthread_mutex_lock(&t->lock);
        if (!t->finished) {
                pthread_mutex_unlock(&t->lock);
                return;
        }
        result = t->result;
        t->handed = NULL;
        t->finished = false;
        pthread_mutex_unlock(&t->lock);

        done = t->done;
        userdata = t->userdata;
        t->current = NULL;
        t->done = NULL;
        t->userdata = NULL;
        done(&result, userdata);
}

static int device_thread_on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        uint64_t v;

        (void) !read(fd, &v, sizeof v);
        device_thread_collect(userdata);
        return 0;
}

int device_thread_new(DeviceThread **ret, sd_event *event, const DeviceThreadDriver *driver,
                      const DeviceOptions *o) {
        _cleanup_(device_thread_freep) DeviceThread *t = NULL;
        sigset_t all, saved;
        int r;

        assert(ret);
        assert(event);
        assert(driver);
        assert(o);

        t = new0(DeviceThread, 1);
        if (!t)
                return -ENOMEM;
        t->driver = driver;
        t->options = o;
        t->event_fd = -1;

        r = pthread_mutex_init(&t->lock, NULL);
        if (r != 0)
                return -r;
        r = pthread_cond_init(&t->cond, NULL);
        if (r != 0) {
                pthread_mutex_destroy(&t->lock);
                return -r;
        }
        t->lock_initialized = true;

        t->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (t->event_fd < 0)
                return -errno;
        r = sd_event_add_io(event, &t->event_source, t->event_fd, EPOLLIN, device_thread_on_event, t);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(t->event_source, "device-worker");

        /* Signals are the loop's (signalfd): the thread starts with all of them blocked. */
        sigfillset(&all);
        r = pthread_sigmask(SIG_SETMASK, &all, &saved);
        if (r != 0)
                return -r;
        r = pthread_create(&t->thread, NULL, worker_main, t);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r != 0)
                return -r;
        t->thread_started = true;
        (void) pthread_setname_np(t->thread, "device");

        *ret = TAKE_PTR(t);
        return 0;
}

DeviceThread *device_thread_free(DeviceThread *t) {
        if (!t)
                return NULL;

        if (t->thread_started) {
                device_thread_interrupt(t);
                pthread_mutex_lock(&t->lock);
                t->quit = true;
                pthread_cond_signal(&t->cond);
                pthread_mutex_unlock(&t->lock);

                (void) pthread_join(t->thread, NULL);
                t->thread_started = false;
        }

        /* What the worker brought back and the loop has not collected yet. */
        device_thread_collect(t);
        assert(!t->current);

        t->event_source = sd_event_source_disable_unref(t->event_source);
        t->event_fd = safe_close(t->event_fd);
        if (t->lock_initialized) {
                pthread_cond_destroy(&t->cond);
                pthread_mutex_destroy(&t->lock);
        }
        return mfree(t);
}

int device_thread_start(DeviceThread *t, const DeviceRequest *req, DeviceDriverDone done, void *userdata) {
        assert(t);
        assert(req);
        assert(done);

        if (t->current)
                return -EBUSY;

        t->current = req;
        t->done = done;
        t->userdata = userdata;

        pthread_mutex_lock(&t->lock);
        t->handed = req;
        t->finished = false;
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);
        return 0;
}

void device_thread_interrupt(DeviceThread *t) {
        assert(t);

        pthread_mutex_lock(&t->lock);
        if (t->state && t->driver->interrupt)
                t->driver->interrupt(t->state);
        pthread_mutex_unlock(&t->lock);
}

int device_thread_inject_fault(DeviceThread *t, DeviceFault f, unsigned count) {
        int r = 0;

        assert(t);

        if (!t->driver->inject_fault)
                return -EOPNOTSUPP;

        pthread_mutex_lock(&t->lock);
        if (t->state)
                r = t->driver->inject_fault(t->state, f, count);
        else {
                t->have_pending_fault = true;
                t->pending_fault = f;
                t->pending_fault_count = count;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}
