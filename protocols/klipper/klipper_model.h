/* Device model of a running Klipper MCU (PROTOCOL.md 5.2, 8): the firmware side of the
 * protocol with the data dictionary an image carries. It receives blocks as the firmware
 * does (sequence check, one nak per run of garbage, responses before the ack), serves
 * identify from the compressed dictionary, answers get_uptime / get_clock / get_config /
 * finalize_config / debug_ping / emergency_stop / clear_shutdown / get_canbus_id, shuts down
 * on an invalid command, and streams cartographer_data after cartographer_stream en=1.
 * Message ids come from the dictionary, so a unit flashed with another build speaks that
 * build's numbering. A byte-stream model (st_stream_model): put it behind a CDC-ACM
 * device, a pty or a CAN stream node. */
#ifndef STATION_PROTOCOLS_KLIPPER_KLIPPER_MODEL_H
#define STATION_PROTOCOLS_KLIPPER_KLIPPER_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/klipper/msgproto.h"
#include "protocols/link/stream.h"

/* How the model's sensor and link misbehave (the vunit's klipper-* faults). */
typedef enum st_klp_sensor {
    ST_KLP_SENSOR_NORMAL = 0, /* data and temp vary with noise around their nominal value */
    ST_KLP_SENSOR_STUCK,      /* every sample carries the same data and temp */
} st_klp_sensor;

typedef struct st_klp_model_faults {
    st_klp_sensor sensor;
    bool temp_set;         /* temp fixed at temp (e.g. out of range) */
    uint32_t temp;
    unsigned drop_every;   /* lose every Nth cartographer_data (0: none) */
    unsigned bad_crc_every;/* send every Nth block with a damaged CRC (0: none) */
    bool silent;           /* no answer at all (receives and says nothing) */
} st_klp_model_faults;

typedef struct st_klp_model_cfg {
    const uint8_t *dict_z;  /* the compressed dictionary (copied) */
    size_t dict_z_len;
    uint8_t can_uuid[6];    /* what get_canbus_id answers (CAN builds) */
    /* The node id the CAN side holds, for get_canbus_id (NULL: 0). */
    int (*nodeid)(void *ctx);
    void *nodeid_ctx;
    uint32_t sample_hz;     /* cartographer_data rate; 0 = ST_KLP_MODEL_SAMPLE_HZ */
    uint32_t seed;          /* noise generator seed (per unit) */
    st_klp_model_faults faults;
} st_klp_model_cfg;

/* Not measured on hardware (PROTOCOL.md 8.3): the model's own choices. */
#define ST_KLP_MODEL_SAMPLE_HZ 250u
#define ST_KLP_MODEL_DATA_NOMINAL 3000000u
#define ST_KLP_MODEL_DATA_NOISE 200u   /* +- */
#define ST_KLP_MODEL_TEMP_NOMINAL 2000u
#define ST_KLP_MODEL_TEMP_NOISE 3u

typedef struct st_klp_model st_klp_model;

/* Parses the dictionary (ST_ERR_PROTO when it is not one). The MCU boots at once: its
 * clock starts at st_now_us(). */
int st_klp_model_new(const st_klp_model_cfg *cfg, st_klp_model **out, st_err *err);
void st_klp_model_free(st_klp_model *m);
st_stream_model *st_klp_model_stream(st_klp_model *m);
const st_klp_dict *st_klp_model_dict(const st_klp_model *m);
/* A reboot: clock from zero, expects sequence 0, not configured, stream off, queues empty. */
void st_klp_model_reset(st_klp_model *m);
void st_klp_model_set_faults(st_klp_model *m, const st_klp_model_faults *f);

typedef struct st_klp_model_stats {
    unsigned identify_requests;
    unsigned blocks_received;
    unsigned naks_sent;
    unsigned commands;
    unsigned samples_sent;
    unsigned samples_dropped; /* by the drop fault or a full transmit queue */
    bool shutdown;
} st_klp_model_stats;
void st_klp_model_get_stats(const st_klp_model *m, st_klp_model_stats *out);

#endif
