/* SPDX-License-Identifier: MIT */
/* The worker thread of a blocking driver, with a fake blocking driver written here: requests run one at a
 * time on the worker, done() comes back on the loop thread, the driver is opened by OPEN (once; a failed
 * open is retried by the next OPEN), nothing runs before it is open, freeing waits for the request at the
 * worker, and interrupts and injected faults reach the driver (an injection before the open waits for
 * it). */

#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <systemd/sd-event.h>

#include "device-thread.h"
#include "device.h"
#include "tests.h"
#include "time-util.h"

/* ---- the fake driver: one instance at a time, shared with the test under its lock ---- */

typedef struct Fake {
        pthread_mutex_t lock;
        pthread_cond_t cond;

        /* Set by the test. */
        unsigned open_failures;         /* the next opens that fail ... */
        int open_error;                 /* ... with this ... */
        DeviceFault open_fault;         /* ... and this */
        bool block;                     /* run waits until released or interrupted */
        usec_t run_usec;                /* run sleeps this long, deaf to interrupts */
        int run_error;                  /* what run answers */
        DeviceFault run_fault;

        /* Seen by the fake. */
        unsigned opens, closes, runs, interrupts, injections;
        unsigned running, max_running;
        bool released, interrupted;
        DeviceOperation ops[64];
        pthread_t run_thread;
        bool signals_blocked;           /* SIGTERM and SIGINT were blocked on the worker */
        DeviceFault injected;
        unsigned injected_count;
        unsigned runs_at_injection;     /* runs before the last injection */
        bool injected_on_loop_thread;
} Fake;

static Fake fake;
static pthread_t loop_thread;

static void fake_reset(void) {
        fake = (Fake) {
                .lock = PTHREAD_MUTEX_INITIALIZER,
                .cond = PTHREAD_COND_INITIALIZER,
        };
}

static int fake_open(void **ret_state, const DeviceOptions *o, DeviceFault *ret_fault) {
        int r = 0;

        pthread_mutex_lock(&fake.lock);
        fake.opens++;
        if (fake.open_failures > 0) {
                fake.open_failures--;
                *ret_fault = fake.open_fault;
                r = fake.open_error;
        }
        pthread_mutex_unlock(&fake.lock);
        if (r < 0)
                return r;
        *ret_state = &fake;
        return 0;
}

static void fake_run(void *state, const DeviceRequest *req, DeviceResult *result) {
        Fake *f = state;
        sigset_t mask;
        unsigned n;

        ASSERT_TRUE(f == &fake);
        ASSERT_OK(-pthread_sigmask(SIG_SETMASK, NULL, &mask));

        pthread_mutex_lock(&f->lock);
        n = ++f->runs;
        f->ops[(n - 1) % ELEMENTSOF(f->ops)] = req->op;
        f->run_thread = pthread_self();
        f->signals_blocked = sigismember(&mask, SIGTERM) == 1 && sigismember(&mask, SIGINT) == 1;
        f->running++;
        f->max_running = MAX(f->max_running, f->running);
        pthread_cond_broadcast(&f->cond);

        if (f->block) {
                /* Bounded: a test that forgets to release fails instead of hanging. */
                usec_t deadline = now(CLOCK_REALTIME) + 20 * USEC_PER_SEC;
                struct timespec ts = {
                        .tv_sec = (time_t) (deadline / USEC_PER_SEC),
                        .tv_nsec = (long) (deadline % USEC_PER_SEC * NSEC_PER_USEC),
                };

                while (!f->released && !f->interrupted)
                        if (pthread_cond_timedwait(&f->cond, &f->lock, &ts) != 0)
                                break;
        }
        pthread_mutex_unlock(&f->lock);

        if (f->run_usec > 0)
                (void) usleep((useconds_t) f->run_usec);

        pthread_mutex_lock(&f->lock);
        f->running--;
        result->error = f->run_error;
        result->fault = f->run_fault;
        pthread_mutex_unlock(&f->lock);

        if (req->op == DEVICE_OP_STATUS) {
                result->have_status = true;
                result->status.last_fiscal_document = n;
        } else if (req->op == DEVICE_OP_PRINT) {
                result->doc.fiscal_document_number = n;
                snprintf(result->doc.receipt_id, sizeof result->doc.receipt_id, "%s", req->receipt_id);
        }
}

static void fake_close(void *state) {
        pthread_mutex_lock(&fake.lock);
        fake.closes++;
        pthread_mutex_unlock(&fake.lock);
}

static void fake_interrupt(void *state) {
        pthread_mutex_lock(&fake.lock);
        fake.interrupts++;
        fake.interrupted = true;
        pthread_cond_broadcast(&fake.cond);
        pthread_mutex_unlock(&fake.lock);
}

static int fake_inject_fault(void *state, DeviceFault f, unsigned count) {
        pthread_mutex_lock(&fake.lock);
        fake.injections++;
        fake.injected = f;
        fake.injected_count = count;
        fake.runs_at_injection = fake.runs;
        fake.injected_on_loop_thread = pthread_equal(pthread_self(), loop_thread);
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static const DeviceThreadDriver fake_driver = {
        .open = fake_open,
        .run = fake_run,
        .close = fake_close,
        .interrupt = fake_interrupt,
        .inject_fault = fake_inject_fault,
};

static const DeviceThreadDriver fake_driver_minimal = {
        .open = fake_open,
        .run = fake_run,
        .close = fake_close,
};

/* Reads a counter of the fake under its lock. */
#define FAKE(field)                                                     \
        ({                                                              \
                __typeof__(fake.field) _v_;                             \
                pthread_mutex_lock(&fake.lock);                         \
                _v_ = fake.field;                                       \
                pthread_mutex_unlock(&fake.lock);                       \
                _v_;                                                    \
        })

static void fake_release(void) {
        pthread_mutex_lock(&fake.lock);
        fake.released = true;
        pthread_cond_broadcast(&fake.cond);
        pthread_mutex_unlock(&fake.lock);
}

/* Waits (without the loop) until the worker is inside run. */
static void fake_wait_running(void) {
        usec_t deadline = now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;

        while (FAKE(running) == 0) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                (void) usleep(1000);
        }
}

/* ---- the loop side ---- */

typedef struct Env {
        sd_event *event;
        DeviceOptions options;
        DeviceThread *thread;
} Env;

typedef struct Done {
        unsigned n;
        DeviceResult result;
        pthread_t thread;
        bool started;           /* set by the test once start() returned: done never runs inside it */
        bool during_start;
} Done;

static void env_setup(Env *e, const DeviceThreadDriver *driver) {
        fake_reset();
        *e = (Env) {};
        loop_thread = pthread_self();
        ASSERT_OK(sd_event_new(&e->event));
        ASSERT_OK(device_thread_new(&e->thread, e->event, driver, &e->options));
}

static void env_teardown(Env *e) {
        e->thread = device_thread_free(e->thread);
        e->event = sd_event_unref(e->event);
}

static void on_done(const DeviceResult *result, void *userdata) {
        Done *d = userdata;

        d->n++;
        d->result = *result;
        d->thread = pthread_self();
        d->during_start = !d->started;
}

static void run_until(Env *e, const unsigned *counter, unsigned n) {
        usec_t deadline = now(CLOCK_MONOTONIC) + 20 * USEC_PER_SEC;

        while (*counter < n) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(e->event, 100 * USEC_PER_MSEC));
        }
}

static void start(Env *e, const DeviceRequest *req, Done *d) {
        *d = (Done) {};
        ASSERT_OK(device_thread_start(e->thread, req, on_done, d));
        d->started = true;
}

/* Starts req and runs the loop until its done() ran. */
static DeviceResult start_and_wait(Env *e, const DeviceRequest *req) {
        Done d;

        start(e, req, &d);
        run_until(e, &d.n, 1);
        ASSERT_EQ(d.n, 1);
        ASSERT_FALSE(d.during_start);
        return d.result;
}

/* A compound literal: it lives to the end of the enclosing block, longer than the request at the worker. */
#define PRINT_REQUEST(id)                                                                               \
        ((DeviceRequest) { .op = DEVICE_OP_PRINT, .receipt_id = (id), .receipt_json = "{}" })

static DeviceResult open_device(Env *e) {
        return start_and_wait(e, &(DeviceRequest) { .op = DEVICE_OP_OPEN });
}

/* ---- tests ---- */

static void test_requests_run_on_the_worker_and_done_runs_on_the_loop(void) {
        Done d;
        Env e;

        env_setup(&e, &fake_driver);
        start(&e, &(DeviceRequest) { .op = DEVICE_OP_OPEN }, &d);
        ASSERT_EQ(d.n, 0); /* never from inside start() */
        run_until(&e, &d.n, 1);
        ASSERT_FALSE(d.during_start);
        ASSERT_OK(d.result.error);
        ASSERT_TRUE(pthread_equal(d.thread, loop_thread));

        start(&e, &PRINT_REQUEST("r-1"), &d);
        run_until(&e, &d.n, 1);
        ASSERT_OK(d.result.error);
        ASSERT_STREQ(d.result.doc.receipt_id, "r-1");
        ASSERT_TRUE(pthread_equal(d.thread, loop_thread));
        ASSERT_FALSE(pthread_equal(FAKE(run_thread), loop_thread));

        /* Signals belong to the loop: the worker has them all blocked. */
        ASSERT_TRUE(FAKE(signals_blocked));
        env_teardown(&e);
}

typedef struct Chain {
        Env *env;
        unsigned n, total;
        uint32_t fds[20];
        char ids[20][DEVICE_RECEIPT_ID_MAX + 1];
        DeviceRequest req;
        char id[16];
} Chain;

static void on_chain_done(const DeviceResult *result, void *userdata) {
        Chain *c = userdata;

        ASSERT_TRUE(pthread_equal(pthread_self(), loop_thread));
        ASSERT_OK(result->error);
        ASSERT_TRUE(c->n < ELEMENTSOF(c->fds));
        c->fds[c->n] = result->doc.fiscal_document_number;
        snprintf(c->ids[c->n], sizeof c->ids[c->n], "%s", result->doc.receipt_id);
        c->n++;
        if (c->n == c->total)
                return;

        /* The next one, from done(): the thread is free again by then. */
        snprintf(c->id, sizeof c->id, "r-%u", c->n);
        c->req = (DeviceRequest) { .op = DEVICE_OP_PRINT, .receipt_id = c->id, .receipt_json = "{}" };
        ASSERT_OK(device_thread_start(c->env->thread, &c->req, on_chain_done, c));
}

static void test_requests_run_one_at_a_time_in_order(void) {
        Chain c = { .total = 20 };
        Env e;

        env_setup(&e, &fake_driver);
        ASSERT_OK(open_device(&e).error);
        fake.run_usec = 2 * USEC_PER_MSEC;

        c.env = &e;
        snprintf(c.id, sizeof c.id, "r-0");
        c.req = (DeviceRequest) { .op = DEVICE_OP_PRINT, .receipt_id = c.id, .receipt_json = "{}" };
        ASSERT_OK(device_thread_start(e.thread, &c.req, on_chain_done, &c));
        run_until(&e, &c.n, c.total);

        for (unsigned i = 0; i < c.total; i++) {
                char id[16];

                snprintf(id, sizeof id, "r-%u", i);
                ASSERT_STREQ(c.ids[i], id);
                ASSERT_EQ_U(c.fds[i], i + 2); /* run 1 was the OPEN's status */
        }
        ASSERT_EQ(FAKE(max_running), 1);
        ASSERT_EQ(FAKE(runs), 21);
        env_teardown(&e);
}

static void test_start_while_busy_is_ebusy(void) {
        static const DeviceRequest status = { .op = DEVICE_OP_STATUS };
        Done first, second = {};
        Env e;

        env_setup(&e, &fake_driver);
        ASSERT_OK(open_device(&e).error);
        fake.block = true;

        start(&e, &(DeviceRequest) { .op = DEVICE_OP_STATUS }, &first);
        fake_wait_running();
        ASSERT_ERROR(device_thread_start(e.thread, &status, on_done, &second), EBUSY);

        /* Busy until its done() ran, not only until the worker finished it. */
        fake_release();
        while (FAKE(running) > 0)
                (void) usleep(1000);
        ASSERT_ERROR(device_thread_start(e.thread, &status, on_done, &second), EBUSY);
        run_until(&e, &first.n, 1);
        ASSERT_OK(first.result.error);

        ASSERT_OK(start_and_wait(&e, &(DeviceRequest) { .op = DEVICE_OP_STATUS }).error);
        ASSERT_EQ(second.n, 0);
        ASSERT_EQ(FAKE(runs), 3);
        env_teardown(&e);
}

static void test_requests_before_open_fail_not_connected(void) {
        static const DeviceOperation ops[] = {
                DEVICE_OP_STATUS, DEVICE_OP_PRINT, DEVICE_OP_FIND, DEVICE_OP_OPEN_SHIFT, DEVICE_OP_REPORT_X,
                DEVICE_OP_CLOSE_SHIFT, DEVICE_OP_DEBUG,
        };
        Env e;

        env_setup(&e, &fake_driver);
        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
                DeviceResult r = start_and_wait(&e, &(DeviceRequest) { .op = ops[i], .receipt_id = "r",
                                                                       .receipt_json = "{}" });

                ASSERT_ERROR(r.error, ENOTCONN);
                ASSERT_EQ(r.fault, DEVICE_FAULT_NOT_CONNECTED);
        }
        ASSERT_EQ(FAKE(opens), 0);
        ASSERT_EQ(FAKE(runs), 0);

        /* Once open they run. */
        ASSERT_OK(open_device(&e).error);
        ASSERT_OK(start_and_wait(&e, &(DeviceRequest) { .op = DEVICE_OP_REPORT_X }).error);
        ASSERT_EQ(FAKE(runs), 2);
        env_teardown(&e);
}

static void test_open_opens_once_and_answers_with_the_status(void) {
        DeviceResult r;
        Env e;

        env_setup(&e, &fake_driver);
        r = open_device(&e);
        ASSERT_OK(r.error);
        ASSERT_EQ(r.fault, DEVICE_FAULT_NONE);
        ASSERT_TRUE(r.have_status);
        ASSERT_EQ_U(r.status.last_fiscal_document, 1);

        /* Open already: only the status again. */
        r = open_device(&e);
        ASSERT_OK(r.error);
        ASSERT_TRUE(r.have_status);
        ASSERT_EQ_U(r.status.last_fiscal_document, 2);
        ASSERT_EQ(FAKE(opens), 1);
        ASSERT_EQ(FAKE(runs), 2);
        ASSERT_EQ(FAKE(ops[0]), DEVICE_OP_STATUS);
        ASSERT_EQ(FAKE(ops[1]), DEVICE_OP_STATUS);

        ASSERT_EQ(FAKE(closes), 0);
        env_teardown(&e);
        ASSERT_EQ(FAKE(closes), 1);
}

static void test_failed_open_is_retried_by_the_next_open(void) {
        DeviceResult r;
        Env e;

        env_setup(&e, &fake_driver);
        fake.open_failures = 2;
        fake.open_error = -EIO;
        fake.open_fault = DEVICE_FAULT_NONE;

        /* A failure that names no fault is the driver's error. */
        r = open_device(&e);
        ASSERT_ERROR(r.error, EIO);
        ASSERT_EQ(r.fault, DEVICE_FAULT_ERROR);
        ASSERT_FALSE(r.have_status);
        r = start_and_wait(&e, &(DeviceRequest) { .op = DEVICE_OP_STATUS });
        ASSERT_ERROR(r.error, ENOTCONN);

        /* One that names a fault keeps it. */
        pthread_mutex_lock(&fake.lock);
        fake.open_error = -ENOTCONN;
        fake.open_fault = DEVICE_FAULT_NOT_CONNECTED;
        pthread_mutex_unlock(&fake.lock);
        r = open_device(&e);
        ASSERT_ERROR(r.error, ENOTCONN);
        ASSERT_EQ(r.fault, DEVICE_FAULT_NOT_CONNECTED);

        r = open_device(&e);
        ASSERT_OK(r.error);
        ASSERT_TRUE(r.have_status);
        ASSERT_EQ(FAKE(opens), 3);
        ASSERT_EQ(FAKE(runs), 1);
        env_teardown(&e);
        ASSERT_EQ(FAKE(closes), 1);
}

static void test_results_without_a_fault_are_errors_unless_they_are_answers(void) {
        static const struct {
                int error;
                DeviceFault fault, expected;
        } cases[] = {
                { -EIO, DEVICE_FAULT_NONE, DEVICE_FAULT_ERROR },
                { -EINVAL, DEVICE_FAULT_NONE, DEVICE_FAULT_ERROR },
                { -ENOENT, DEVICE_FAULT_NONE, DEVICE_FAULT_NONE },     /* no such document */
                { -EALREADY, DEVICE_FAULT_NONE, DEVICE_FAULT_NONE },   /* shift closed already */
                { -ENOMEDIUM, DEVICE_FAULT_PAPER_OUT, DEVICE_FAULT_PAPER_OUT },
                { -EINVAL, DEVICE_FAULT_REJECTED, DEVICE_FAULT_REJECTED },
                { 0, DEVICE_FAULT_PAPER_OUT, DEVICE_FAULT_NONE },      /* success is never a fault */
        };
        Env e;

        env_setup(&e, &fake_driver);
        ASSERT_OK(open_device(&e).error);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                DeviceResult r;

                pthread_mutex_lock(&fake.lock);
                fake.run_error = cases[i].error;
                fake.run_fault = cases[i].fault;
                pthread_mutex_unlock(&fake.lock);
                r = start_and_wait(&e, &(DeviceRequest) { .op = DEVICE_OP_FIND, .receipt_id = "r",
                                                          .receipt_json = "{}" });
                ASSERT_EQ(r.error, cases[i].error);
                ASSERT_EQ(r.fault, cases[i].expected);
        }
        env_teardown(&e);
}

static void test_free_waits_for_the_running_request_and_delivers_its_result(void) {
        usec_t t;
        Done d;
        Env e;

        env_setup(&e, &fake_driver);
        ASSERT_OK(open_device(&e).error);
        fake.run_usec = 300 * USEC_PER_MSEC; /* deaf to the interrupt: the register finishes it */

        start(&e, &PRINT_REQUEST("at-the-register"), &d);
        fake_wait_running();
        t = now(CLOCK_MONOTONIC);
        e.thread = device_thread_free(e.thread);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t >= 200 * USEC_PER_MSEC);

        /* Its done() ran from inside free, on this thread, with what the driver made. */
        ASSERT_EQ(d.n, 1);
        ASSERT_TRUE(pthread_equal(d.thread, loop_thread));
        ASSERT_OK(d.result.error);
        ASSERT_STREQ(d.result.doc.receipt_id, "at-the-register");
        ASSERT_EQ_U(d.result.doc.fiscal_document_number, 2);
        ASSERT_EQ(FAKE(interrupts), 1);
        ASSERT_EQ(FAKE(closes), 1);
        env_teardown(&e);
}

static void test_free_runs_a_request_handed_over_but_not_yet_picked_up(void) {
        Done d;
        Env e;

        env_setup(&e, &fake_driver);
        ASSERT_OK(open_device(&e).error);

        /* Freed at once: the request was sent, so it runs and reports. */
        start(&e, &PRINT_REQUEST("sent"), &d);
        e.thread = device_thread_free(e.thread);
        ASSERT_EQ(d.n, 1);
        ASSERT_OK(d.result.error);
        ASSERT_STREQ(d.result.doc.receipt_id, "sent");
        ASSERT_EQ(FAKE(runs), 2);
        ASSERT_EQ(FAKE(closes), 1);
        env_teardown(&e);
}

static void test_free_before_open_closes_nothing(void) {
        Env e;

        env_setup(&e, &fake_driver);
        env_teardown(&e);
        ASSERT_EQ(FAKE(opens), 0);
        ASSERT_EQ(FAKE(closes), 0);
        ASSERT_EQ(FAKE(interrupts), 0);
}

static void test_inject_fault_before_open_is_applied_at_open(void) {
        Env e;

        env_setup(&e, &fake_driver);

        /* Kept until the driver is open, the last one replacing earlier ones. */
        ASSERT_OK(device_thread_inject_fault(e.thread, DEVICE_FAULT_COVER_OPEN, 1));
        ASSERT_OK(device_thread_inject_fault(e.thread, DEVICE_FAULT_PAPER_OUT, 3));
        ASSERT_EQ(FAKE(injections), 0);

        /* Not by a failed open. */
        fake.open_failures = 1;
        fake.open_error = -EIO;
        ASSERT_ERROR(open_device(&e).error, EIO);
        ASSERT_EQ(FAKE(injections), 0);

        ASSERT_OK(open_device(&e).error);
        ASSERT_EQ(FAKE(injections), 1);
        ASSERT_EQ(FAKE(injected), DEVICE_FAULT_PAPER_OUT);
        ASSERT_EQ(FAKE(injected_count), 3);
        ASSERT_EQ(FAKE(runs_at_injection), 0); /* before the open's status: that status shows it */
        ASSERT_FALSE(FAKE(injected_on_loop_thread));

        /* Once open, only once. */
        ASSERT_OK(open_device(&e).error);
        ASSERT_EQ(FAKE(injections), 1);

        /* Open: straight to the driver, from the loop thread. */
        ASSERT_OK(device_thread_inject_fault(e.thread, DEVICE_FAULT_NONE, 0));
        ASSERT_EQ(FAKE(injections), 2);
        ASSERT_EQ(FAKE(injected), DEVICE_FAULT_NONE);
        ASSERT_TRUE(FAKE(injected_on_loop_thread));
        env_teardown(&e);
}

static void test_inject_fault_while_a_request_runs_reaches_the_driver_at_once(void) {
        Done d;
        Env e;

        env_setup(&e, &fake_driver);
        ASSERT_OK(open_device(&e).error);
        fake.block = true;
        start(&e, &(DeviceRequest) { .op = DEVICE_OP_STATUS }, &d);
        fake_wait_running();
        ASSERT_OK(device_thread_inject_fault(e.thread, DEVICE_FAULT_PAPER_OUT, 0));
        ASSERT_EQ(FAKE(injections), 1);
        ASSERT_EQ(FAKE(runs_at_injection), 2);
        fake_release();
        run_until(&e, &d.n, 1);
        env_teardown(&e);
}

static void test_inject_fault_without_driver_support_is_eopnotsupp(void) {
        Env e;

        env_setup(&e, &fake_driver_minimal);
        ASSERT_ERROR(device_thread_inject_fault(e.thread, DEVICE_FAULT_PAPER_OUT, 1), EOPNOTSUPP);
        ASSERT_OK(open_device(&e).error);
        ASSERT_ERROR(device_thread_inject_fault(e.thread, DEVICE_FAULT_PAPER_OUT, 1), EOPNOTSUPP);
        /* Nothing to interrupt with: a no-op. */
        device_thread_interrupt(e.thread);
        env_teardown(&e);
        ASSERT_EQ(FAKE(closes), 1);
}

static void test_interrupt_reaches_the_driver(void) {
        usec_t t;
        Done d;
        Env e;

        env_setup(&e, &fake_driver);

        /* Not open: nothing to interrupt yet. */
        device_thread_interrupt(e.thread);
        ASSERT_EQ(FAKE(interrupts), 0);

        ASSERT_OK(open_device(&e).error);
        fake.block = true;
        start(&e, &PRINT_REQUEST("waiting"), &d);
        fake_wait_running();

        t = now(CLOCK_MONOTONIC);
        device_thread_interrupt(e.thread);
        ASSERT_EQ(FAKE(interrupts), 1);
        run_until(&e, &d.n, 1);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t < 5 * USEC_PER_SEC);
        ASSERT_TRUE(FAKE(interrupted));
        ASSERT_FALSE(FAKE(released));
        ASSERT_OK(d.result.error);
        ASSERT_STREQ(d.result.doc.receipt_id, "waiting");
        env_teardown(&e);
}

static void test_free_interrupts_a_waiting_request(void) {
        usec_t t;
        Done d;
        Env e;

        env_setup(&e, &fake_driver);
        ASSERT_OK(open_device(&e).error);
        fake.block = true;
        start(&e, &PRINT_REQUEST("waiting"), &d);
        fake_wait_running();

        t = now(CLOCK_MONOTONIC);
        e.thread = device_thread_free(e.thread);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t < 5 * USEC_PER_SEC);
        ASSERT_EQ(d.n, 1);
        ASSERT_OK(d.result.error);
        ASSERT_TRUE(FAKE(interrupted));
        ASSERT_EQ(FAKE(closes), 1);
        env_teardown(&e);
}

int main(void) {
        TEST_RUN(test_requests_run_on_the_worker_and_done_runs_on_the_loop);
        TEST_RUN(test_requests_run_one_at_a_time_in_order);
        TEST_RUN(test_start_while_busy_is_ebusy);
        TEST_RUN(test_requests_before_open_fail_not_connected);
        TEST_RUN(test_open_opens_once_and_answers_with_the_status);
        TEST_RUN(test_failed_open_is_retried_by_the_next_open);
        TEST_RUN(test_results_without_a_fault_are_errors_unless_they_are_answers);
        TEST_RUN(test_free_waits_for_the_running_request_and_delivers_its_result);
        TEST_RUN(test_free_runs_a_request_handed_over_but_not_yet_picked_up);
        TEST_RUN(test_free_before_open_closes_nothing);
        TEST_RUN(test_inject_fault_before_open_is_applied_at_open);
        TEST_RUN(test_inject_fault_while_a_request_runs_reaches_the_driver_at_once);
        TEST_RUN(test_inject_fault_without_driver_support_is_eopnotsupp);
        TEST_RUN(test_interrupt_reaches_the_driver);
        TEST_RUN(test_free_interrupts_a_waiting_request);
        return 0;
}
