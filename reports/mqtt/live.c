/* Live station status over MQTT with libmosquitto (see live.h, reports/MQTT.md). */
#include "reports/mqtt/live.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "reports/ship/json.h"
#include "station/core/clock.h"
#include "station/core/text.h"

#define MOD "mqtt"
#define PROGRESS_EVERY_US 250000u
#define SUPERVISE_STALE_US 30000000u

typedef struct msg {
    char *topic;
    char *payload;
    uint64_t last_us; /* retained: when it was last published (progress rate limit) */
} msg;

struct st_live {
    struct mosquitto *m;
    const st_logger *log;
    char base[ST_FLEET_NAME_MAX + 80]; /* "<prefix>/<station>" */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool connected;
    msg *retained;   /* the last message of every retained topic, republished on connect */
    size_t nret, capret;
    msg *queue;      /* events waiting for a connection (FIFO) */
    size_t nq, capq;
    unsigned long published, acked, dropped, connects;
    unsigned long inflight; /* QoS 1 messages not acknowledged yet */
    /* The supervisor: libmosquitto's network thread reconnects a session it once had, but
     * gives up when the very first connection fails or on a fatal error (TLS); this thread
     * makes the first connection, with back-off, and restarts a network thread that has
     * been without a broker for SUPERVISE_STALE_US. */
    pthread_t sup;
    bool sup_started, stopping, loop_running;
    uint64_t down_since;  /* st_now_us() when the connection went (0: connected) */
    char host[256];
    int port, keepalive;
};

/* libmosquitto's library state (OpenSSL set-up) is process-wide by its design: initialise
 * it once, and leave it for process exit. */
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static void lib_init(void)
{
    mosquitto_lib_init();
}

/* Caller holds mu. */
static void send_locked(st_live *l, const char *topic, const char *payload, bool retain)
{
    int rc = mosquitto_publish(l->m, NULL, topic, (int)strlen(payload), payload, 1, retain);
    if (rc == MOSQ_ERR_SUCCESS) {
        l->published++;
        l->inflight++;
    }
}

static int push(msg **arr, size_t *n, size_t *cap, const char *topic, const char *payload)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        msg *a = realloc(*arr, c * sizeof *a);
        if (!a)
            return ST_ERR_NOMEM;
        *arr = a;
        *cap = c;
    }
    msg *m = &(*arr)[*n];
    m->topic = strdup(topic);
    m->payload = strdup(payload);
    m->last_us = 0;
    if (!m->topic || !m->payload) {
        free(m->topic);
        free(m->payload);
        return ST_ERR_NOMEM;
    }
    (*n)++;
    return 0;
}

static void on_connect(struct mosquitto *m, void *ctx, int rc)
{
    st_live *l = ctx;
    if (rc != 0) {
        ST_LOGW(l->log, MOD, "broker refused the connection: %s", mosquitto_connack_string(rc));
        return;
    }
    pthread_mutex_lock(&l->mu);
    l->connected = true;
    l->down_since = 0;
    l->connects++;
    char topic[sizeof l->base + 16];
    snprintf(topic, sizeof topic, "%s/status", l->base);
    send_locked(l, topic, "online", true);
    for (size_t i = 0; i < l->nret; i++)
        send_locked(l, l->retained[i].topic, l->retained[i].payload, true);
    for (size_t i = 0; i < l->nq; i++) {
        send_locked(l, l->queue[i].topic, l->queue[i].payload, false);
        free(l->queue[i].topic);
        free(l->queue[i].payload);
    }
    l->nq = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    ST_LOGI(l->log, MOD, "connected to the broker");
    (void)m;
}

static void on_disconnect(struct mosquitto *m, void *ctx, int rc)
{
    st_live *l = ctx;
    pthread_mutex_lock(&l->mu);
    l->connected = false;
    if (!l->down_since)
        l->down_since = st_now_us();
    /* Unacknowledged messages are resent by libmosquitto on reconnect, or superseded by
     * the retained republish: stop counting them as in flight for close's wait. */
    l->inflight = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (rc)
        ST_LOGW(l->log, MOD, "lost the broker (%s); reconnecting", mosquitto_strerror(rc));
    (void)m;
}

static void on_publish(struct mosquitto *m, void *ctx, int mid)
{
    st_live *l = ctx;
    pthread_mutex_lock(&l->mu);
    l->acked++;
    if (l->inflight)
        l->inflight--;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    (void)m;
    (void)mid;
}

static int mosq_err(st_err *err, int rc, const char *what)
{
    return st_err_set(err, rc == MOSQ_ERR_NOMEM ? ST_ERR_NOMEM : ST_ERR_INVAL, "mqtt: %s: %s", what,
                      rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
}

static struct timespec abs_in_ms(unsigned ms);

static void *supervise(void *arg)
{
    st_live *l = arg;
    unsigned delay_ms = 1000;
    bool warned = false;
    pthread_mutex_lock(&l->mu);
    while (!l->stopping) {
        if (!l->loop_running) {
            pthread_mutex_unlock(&l->mu);
            /* A non-blocking connect, so close never waits for a TCP time-out; one that
             * fails later is caught by the staleness rule below. */
            int rc = mosquitto_connect_async(l->m, l->host, l->port, l->keepalive);
            if (rc == MOSQ_ERR_SUCCESS)
                rc = mosquitto_loop_start(l->m);
            if (rc != MOSQ_ERR_SUCCESS && !warned) {
                ST_LOGW(l->log, MOD, "%s:%d: %s; will keep trying", l->host, l->port,
                        rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
                warned = true;
            }
            pthread_mutex_lock(&l->mu);
            if (rc == MOSQ_ERR_SUCCESS) {
                l->loop_running = true;
                l->down_since = st_now_us(); /* until CONNACK */
                delay_ms = 1000;
                continue;
            }
            struct timespec until = abs_in_ms(delay_ms);
            while (!l->stopping && pthread_cond_timedwait(&l->cv, &l->mu, &until) == 0)
                ;
            delay_ms = delay_ms >= 4000 ? 8000 : delay_ms * 2;
            continue;
        }
        if (!l->connected && l->down_since && st_now_us() - l->down_since > SUPERVISE_STALE_US) {
            /* The network thread gave up (or keeps failing): start over. */
            pthread_mutex_unlock(&l->mu);
            mosquitto_disconnect(l->m);
            mosquitto_loop_stop(l->m, true);
            pthread_mutex_lock(&l->mu);
            l->loop_running = false;
            continue;
        }
        struct timespec until = abs_in_ms(1000);
        pthread_cond_timedwait(&l->cv, &l->mu, &until);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int st_live_open(const st_fleet_cfg *cfg, const char *client_suffix, const st_logger *log,
                 st_live **out, st_err *err)
{
    if (!cfg->has_mqtt)
        return st_err_set(err, ST_ERR_INVAL, "%s: no mqtt section", cfg->path);
    if (!st_fleet_name_ok(cfg->station) || !st_fleet_name_ok(cfg->mqtt_prefix))
        return st_err_set(err, ST_ERR_INVAL, "%s: bad station name or topic prefix", cfg->path);
    pthread_once(&lib_once, lib_init);
    st_live *l = calloc(1, sizeof *l);
    if (!l)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    l->log = log;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    snprintf(l->base, sizeof l->base, "%s/%s", cfg->mqtt_prefix, cfg->station);
    char id[ST_FLEET_NAME_MAX + 40], will[sizeof l->base + 16];
    if (client_suffix)
        snprintf(id, sizeof id, "%s-%.30s", cfg->station, client_suffix);
    else
        st_strlcpy(id, cfg->station, sizeof id);
    snprintf(will, sizeof will, "%s/status", l->base);
    int rc;
    l->m = mosquitto_new(id, true, l);
    if (!l->m) {
        rc = st_err_set(err, ST_ERR_NOMEM, "mqtt: out of memory");
        goto fail;
    }
    mosquitto_connect_callback_set(l->m, on_connect);
    mosquitto_disconnect_callback_set(l->m, on_disconnect);
    mosquitto_publish_callback_set(l->m, on_publish);
    mosquitto_reconnect_delay_set(l->m, 1, 8, true);
    if ((rc = mosquitto_will_set(l->m, will, 7, "offline", 1, true)) != MOSQ_ERR_SUCCESS) {
        rc = mosq_err(err, rc, "last will");
        goto fail;
    }
    if (cfg->mqtt_user[0] &&
        (rc = mosquitto_username_pw_set(l->m, cfg->mqtt_user,
                                        cfg->mqtt_password[0] ? cfg->mqtt_password : NULL)) != 0) {
        rc = mosq_err(err, rc, "username");
        goto fail;
    }
    if (cfg->tls_cafile[0] &&
        (rc = mosquitto_tls_set(l->m, cfg->tls_cafile, NULL,
                                cfg->tls_certfile[0] ? cfg->tls_certfile : NULL,
                                cfg->tls_keyfile[0] ? cfg->tls_keyfile : NULL, NULL)) != 0) {
        rc = mosq_err(err, rc, "tls");
        goto fail;
    }
    st_strlcpy(l->host, cfg->mqtt_host, sizeof l->host);
    l->port = (int)cfg->mqtt_port;
    l->keepalive = (int)cfg->mqtt_keepalive;
    /* Connecting happens in the supervisor: a broker that is down, unreachable or refuses
     * the TLS handshake (a certificate that expired) is not an error here, because live
     * status must never stop production; the operator sees a warning. */
    if ((rc = pthread_create(&l->sup, NULL, supervise, l)) != 0) {
        rc = st_err_set(err, ST_ERR_NOMEM, "mqtt: cannot start its thread: %s", strerror(rc));
        goto fail;
    }
    l->sup_started = true;
    *out = l;
    return 0;
fail:
    if (l->m)
        mosquitto_destroy(l->m);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    return rc;
}

/* Absolute CLOCK_REALTIME deadline for pthread_cond_timedwait. */
static struct timespec abs_in_ms(unsigned ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

bool st_live_wait_connected(st_live *l, unsigned timeout_ms)
{
    struct timespec until = abs_in_ms(timeout_ms);
    pthread_mutex_lock(&l->mu);
    while (!l->connected && pthread_cond_timedwait(&l->cv, &l->mu, &until) == 0)
        ;
    bool c = l->connected;
    pthread_mutex_unlock(&l->mu);
    return c;
}

void st_live_close(st_live *l, unsigned timeout_ms)
{
    if (!l)
        return;
    char topic[sizeof l->base + 16];
    snprintf(topic, sizeof topic, "%s/status", l->base);
    struct timespec until = abs_in_ms(timeout_ms);
    pthread_mutex_lock(&l->mu);
    if (l->connected)
        send_locked(l, topic, "offline", true);
    while (l->connected && (l->inflight || l->nq) &&
           pthread_cond_timedwait(&l->cv, &l->mu, &until) == 0)
        ;
    l->stopping = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (l->sup_started)
        pthread_join(l->sup, NULL);
    mosquitto_disconnect(l->m);
    if (l->loop_running)
        mosquitto_loop_stop(l->m, false);
    mosquitto_destroy(l->m);
    for (size_t i = 0; i < l->nret; i++) {
        free(l->retained[i].topic);
        free(l->retained[i].payload);
    }
    for (size_t i = 0; i < l->nq; i++) {
        free(l->queue[i].topic);
        free(l->queue[i].payload);
    }
    free(l->retained);
    free(l->queue);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

/* Set a retained topic and publish it (or leave it for the next connect). With
 * min_gap_us, skip the publish when the last one was more recent (the value is still
 * kept, so a reconnect shows the latest). */
static void retain(st_live *l, const char *topic, st_jbuf *b, uint64_t min_gap_us)
{
    if (b->oom || !b->p)
        return;
    pthread_mutex_lock(&l->mu);
    msg *m = NULL;
    for (size_t i = 0; i < l->nret && !m; i++)
        if (strcmp(l->retained[i].topic, topic) == 0)
            m = &l->retained[i];
    if (m) {
        free(m->payload);
        m->payload = b->p;
        b->p = NULL;
    } else if (push(&l->retained, &l->nret, &l->capret, topic, b->p) == 0) {
        m = &l->retained[l->nret - 1];
    }
    uint64_t now = st_now_us();
    if (m && l->connected && (!min_gap_us || !m->last_us || now - m->last_us >= min_gap_us)) {
        m->last_us = now;
        send_locked(l, m->topic, m->payload, true);
    }
    pthread_mutex_unlock(&l->mu);
}

static void time_field(st_jbuf *b)
{
    char t[40];
    st_format_utc(st_wall_us(), t, sizeof t);
    st_jbuf_add(b, ",\"time\":", 8);
    st_jbuf_str(b, t);
}

static void opt_str(st_jbuf *b, const char *key, const char *v)
{
    if (!v)
        return;
    st_jbuf_fmt(b, ",\"%s\":", key);
    st_jbuf_str(b, v);
}

void st_live_slot_state(st_live *l, int slot, const char *state, const char *unit,
                        const char *run_id)
{
    if (!l)
        return;
    char topic[sizeof l->base + 32];
    snprintf(topic, sizeof topic, "%s/slot/%d/state", l->base, slot);
    st_jbuf b = { 0 };
    st_jbuf_add(&b, "{\"state\":", 9);
    st_jbuf_str(&b, state);
    opt_str(&b, "unit", unit);
    opt_str(&b, "run", run_id);
    time_field(&b);
    st_jbuf_add(&b, "}", 1);
    retain(l, topic, &b, 0);
    free(b.p);
}

void st_live_slot_step(st_live *l, int slot, const char *step, int attempt)
{
    if (!l)
        return;
    char topic[sizeof l->base + 32];
    snprintf(topic, sizeof topic, "%s/slot/%d/step", l->base, slot);
    st_jbuf b = { 0 };
    st_jbuf_add(&b, "{\"step\":", 8);
    st_jbuf_str(&b, step ? step : "");
    st_jbuf_fmt(&b, ",\"attempt\":%d", attempt);
    time_field(&b);
    st_jbuf_add(&b, "}", 1);
    retain(l, topic, &b, 0);
    free(b.p);
}

void st_live_slot_progress(st_live *l, int slot, const char *phase, uint64_t done, uint64_t total)
{
    if (!l)
        return;
    char topic[sizeof l->base + 32];
    snprintf(topic, sizeof topic, "%s/slot/%d/progress", l->base, slot);
    st_jbuf b = { 0 };
    st_jbuf_add(&b, "{\"phase\":", 9);
    st_jbuf_str(&b, phase ? phase : "");
    st_jbuf_fmt(&b, ",\"done\":%llu,\"total\":%llu,\"percent\":%u", (unsigned long long)done,
                (unsigned long long)total, total ? (unsigned)(done * 100u / total) : 0u);
    st_jbuf_add(&b, "}", 1);
    retain(l, topic, &b, done >= total ? 0 : PROGRESS_EVERY_US);
    free(b.p);
}

void st_live_unit_done(st_live *l, int slot, const char *verdict, const char *unit,
                       const char *cause, const char *report, const char *run_id)
{
    if (!l)
        return;
    char topic[sizeof l->base + 32];
    st_jbuf b = { 0 };
    st_jbuf_fmt(&b, "{\"slot\":%d,\"verdict\":", slot);
    st_jbuf_str(&b, verdict ? verdict : "");
    opt_str(&b, "unit", unit);
    opt_str(&b, "cause", cause);
    opt_str(&b, "report", report);
    opt_str(&b, "run", run_id);
    time_field(&b);
    st_jbuf_add(&b, "}", 1);
    if (b.oom) {
        free(b.p);
        return;
    }
    /* The event first, then the retained verdict: a subscriber that sees the verdict
     * change has been sent the event already. */
    snprintf(topic, sizeof topic, "%s/events/unit", l->base);
    pthread_mutex_lock(&l->mu);
    if (l->connected) {
        int rc = mosquitto_publish(l->m, NULL, topic, (int)b.len, b.p, 1, false);
        if (rc == MOSQ_ERR_SUCCESS) {
            l->published++;
            l->inflight++;
        } else {
            push(&l->queue, &l->nq, &l->capq, topic, b.p);
        }
    } else {
        if (l->nq >= ST_LIVE_QUEUE_MAX) {
            free(l->queue[0].topic);
            free(l->queue[0].payload);
            memmove(l->queue, l->queue + 1, (l->nq - 1) * sizeof *l->queue);
            l->nq--;
            l->dropped++;
        }
        push(&l->queue, &l->nq, &l->capq, topic, b.p);
    }
    pthread_mutex_unlock(&l->mu);
    snprintf(topic, sizeof topic, "%s/slot/%d/verdict", l->base, slot);
    retain(l, topic, &b, 0);
    free(b.p);
}

void st_live_get_stats(st_live *l, st_live_stats *out)
{
    pthread_mutex_lock(&l->mu);
    out->published = l->published;
    out->acked = l->acked;
    out->queued = l->nq;
    out->dropped = l->dropped;
    out->connects = l->connects;
    out->connected = l->connected;
    pthread_mutex_unlock(&l->mu);
}
