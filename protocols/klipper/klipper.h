/* Host side of the Klipper MCU protocol over a byte stream (USB-CDC, UART, or the CAN byte
 * stream of protocols/link/can_model.h once the admin side gave the node an id): reliable
 * delivery of command blocks (acks, naks, retransmission with a backed-off timer, the
 * 12-block window and RECEIVE_WINDOW), the sequence resync of a first contact, the identify
 * handshake, and commands/responses by the dictionary's format strings (PROTOCOL.md 5-7).
 * Single-threaded: one session per unit; time through deadlines, never sleeps. */
#ifndef STATION_PROTOCOLS_KLIPPER_KLIPPER_H
#define STATION_PROTOCOLS_KLIPPER_KLIPPER_H

#include <stddef.h>
#include <stdint.h>

#include "protocols/klipper/msgproto.h"
#include "protocols/link/stream.h"
#include "station/core/log.h"

typedef struct st_klp_host st_klp_host;

/* Open a session on s (not owned; it must outlive the session). Nothing is sent yet. */
int st_klp_host_open(st_stream *s, const st_logger *log, st_klp_host **out, st_err *err);
void st_klp_host_close(st_klp_host *h);

/* The identify handshake: fetch the compressed dictionary in 40-byte chunks, inflate and
 * parse it (timeout_ms for the whole download; Klipper allows 5 s). After it, commands and
 * responses go by this dictionary. */
#define ST_KLP_IDENTIFY_MS 5000u
int st_klp_host_identify(st_klp_host *h, unsigned timeout_ms, st_err *err);
/* The dictionary (NULL before identify) and its compressed bytes as the unit sent them. */
const st_klp_dict *st_klp_host_dict(const st_klp_host *h);
const uint8_t *st_klp_host_dict_raw(const st_klp_host *h, size_t *len);

/* Queue one encoded command (content bytes, <= 59) in its own block and send it as the
 * window allows; delivery is then the session's job (retransmitted until acked). */
int st_klp_host_send(st_klp_host *h, const uint8_t *msg, size_t n, unsigned timeout_ms,
                     st_err *err);
/* The same from the text form ("cartographer_stream en=1"), by the dictionary. */
int st_klp_host_send_text(st_klp_host *h, const char *text, unsigned timeout_ms, st_err *err);

/* Next response message from the unit, in arrival order: 1 with *out filled (its byte
 * strings point into the session and stay valid until the next call on it), 0 when
 * timeout_ms passes first, < 0 on a link error. Messages the dictionary does not know are
 * counted and skipped. */
int st_klp_host_recv(st_klp_host *h, unsigned timeout_ms, st_klp_decoded *out, st_err *err);

/* Send cmd_text and wait for the next response named resp (other messages that arrive
 * meanwhile are dropped from the queue first: the answer is the first resp after the
 * send). Re-sends the command every retry_ms (Klipper's send-with-response retries) until
 * timeout_ms. 0 and *out on success, ST_ERR_TIMEOUT naming the command otherwise. */
int st_klp_host_query(st_klp_host *h, const char *cmd_text, const char *resp,
                      unsigned timeout_ms, st_klp_decoded *out, st_err *err);

/* Wait until every queued block is acked (or the timeout passes: ST_ERR_TIMEOUT). */
int st_klp_host_flush(st_klp_host *h, unsigned timeout_ms, st_err *err);

/* ---- checks on a running unit (after identify) ------------------------------------------ */

/* The unit's clock against the host's: get_uptime, then get_clock often enough to follow
 * the 32-bit wraps, for duration_ms, then get_uptime again. The host time of an answer is
 * the middle of its round trip; each end takes the shortest of a few round trips. */
typedef struct st_klp_alive {
    uint64_t uptime0, uptime1; /* ticks since the unit booted, first and last */
    uint64_t host_us;          /* host time between them */
    double rate_hz;            /* ticks per host second */
    double ratio;              /* rate_hz / CLOCK_FREQ (1.0 = on time) */
    unsigned clock_reads;      /* get_clock answers used to follow the clock */
    uint64_t rtt_us;           /* the larger of the two uptime round trips used: the rate's
                                  error is at most rtt_us / host_us */
} st_klp_alive;
int st_klp_host_alive(st_klp_host *h, unsigned duration_ms, st_klp_alive *out, st_err *err);

/* Statistics of one integer field over a run of responses. */
typedef struct st_klp_stats {
    unsigned n;
    double min, max, mean, stddev; /* stddev: population (n in the denominator) */
    unsigned gaps; /* runs where the responses' clock field advanced more than 1.5 times its
                      smallest step (samples the unit did not deliver); 0 without a clock */
} st_klp_stats;

/* Send start_cmd (text form), collect count responses named resp, send stop_cmd (NULL:
 * none), and compute the statistics of field. ST_ERR_TIMEOUT naming what came when fewer
 * arrive within timeout_ms (out still holds the statistics of those). */
int st_klp_host_sample(st_klp_host *h, const char *start_cmd, const char *stop_cmd,
                       const char *resp, const char *field, unsigned count, unsigned timeout_ms,
                       st_klp_stats *out, st_err *err);

typedef struct st_klp_host_stats {
    uint64_t blocks_sent;      /* first transmissions */
    uint64_t retransmits;      /* blocks sent again (nak or timeout) */
    uint64_t blocks_received;  /* valid blocks from the unit */
    uint64_t bytes_invalid;    /* bytes dropped by the block finder (bad CRC, junk) */
    uint64_t unknown_messages; /* ids the dictionary does not have */
    uint64_t queue_overflows;  /* responses lost because nobody read them */
    uint64_t resyncs;          /* first-contact sequence adoptions */
} st_klp_host_stats;
void st_klp_host_get_stats(const st_klp_host *h, st_klp_host_stats *out);

#endif
