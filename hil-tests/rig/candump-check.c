/* rig-candump-check: checks a CAN session recorded by candump (can-utils, `candump -L`)
 * against the Katapult framing, reusing protocols/katapult/frame.h: per CAN id, the
 * payloads of its frames (at most 8 bytes each) are joined in order and cut into Katapult
 * frames (01 88 CMD LEN payload CRC16 99 03, PROTOCOL.md §1). Ids 0x3F0/0x3F1 carry the
 * CAN admin commands (not framed); every other id is one direction of a node's data
 * channel (host -> node on an even id 0x100 + 2n, node -> host on the next odd id).
 *
 *   rig-candump-check [--nodes N] [--min-blocks B] [--quiet] [FILE]     (stdin without FILE)
 *
 * Passes (exit 0) when every data-channel stream parses into whole frames with good CRCs
 * and nothing left over, at least N host->node streams were seen each with its answer
 * stream, and each host->node stream holds at least B SEND_BLOCK frames. Exit 1 when a
 * check fails, 2 on usage or unreadable input. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/katapult/frame.h"
#include "station/core/digest.h"

#define MAX_IDS 64
#define ADMIN_QUERY 0x3F0u
#define ADMIN_REPLY 0x3F1u

typedef struct stream {
    uint32_t id;
    uint8_t *buf;
    size_t len, cap;
    unsigned can_frames;
    unsigned codes[256];
    unsigned frames, drops;
    size_t leftover;
} stream;

typedef struct session {
    stream s[MAX_IDS];
    size_t n;
    unsigned admin, bad_lines, long_frames;
} session;

static stream *stream_of(session *ss, uint32_t id)
{
    for (size_t i = 0; i < ss->n; i++)
        if (ss->s[i].id == id)
            return &ss->s[i];
    if (ss->n == MAX_IDS)
        return NULL;
    stream *st = &ss->s[ss->n++];
    memset(st, 0, sizeof(*st));
    st->id = id;
    return st;
}

/* "(1700000000.123456) can0 123#0188..." -> id, data. */
static bool parse_line(const char *line, uint32_t *id, uint8_t *data, size_t *len)
{
    const char *p = strchr(line, ')');
    if (!p)
        return false;
    p = strchr(p + 2, ' ');
    if (!p)
        return false;
    char *end;
    unsigned long v = strtoul(p + 1, &end, 16);
    if (*end != '#' || v > 0x7ff)
        return false;
    *id = (uint32_t)v;
    *len = 0;
    for (p = end + 1; st_hexval(p[0]) >= 0 && st_hexval(p[1]) >= 0; p += 2) {
        if (*len == 64)
            return false;
        data[(*len)++] = (uint8_t)(st_hexval(p[0]) << 4 | st_hexval(p[1]));
    }
    return *p == 0 || *p == '\n' || *p == '\r';
}

static bool append(stream *st, const uint8_t *d, size_t n)
{
    if (st->len + n > st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 4096;
        while (cap < st->len + n)
            cap *= 2;
        uint8_t *b = realloc(st->buf, cap);
        if (!b)
            return false;
        st->buf = b;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, d, n);
    st->len += n;
    return true;
}

static void cut_frames(stream *st)
{
    size_t off = 0;
    while (off < st->len) {
        st_kat_check c = st_kat_frame_check(st->buf + off, st->len - off, ST_KAT_FRAME_MAX);
        if (c.kind == ST_KAT_NEED_MORE)
            break;
        if (c.kind == ST_KAT_DROP) {
            st->drops++;
        } else {
            st->frames++;
            st->codes[st_kat_frame_code(st->buf + off)]++;
        }
        off += c.len;
    }
    st->leftover = st->len - off;
}

int main(int argc, char **argv)
{
    unsigned want_nodes = 1, min_blocks = 0;
    bool quiet = false;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc) {
            want_nodes = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--min-blocks") == 0 && i + 1 < argc) {
            min_blocks = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "usage: rig-candump-check [--nodes N] [--min-blocks B] [--quiet] [FILE]\n");
            return 2;
        } else {
            path = argv[i];
        }
    }
    FILE *f = path ? fopen(path, "r") : stdin;
    if (!f) {
        perror(path);
        return 2;
    }
    static session ss;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        uint32_t id;
        uint8_t d[64];
        size_t n;
        if (!parse_line(line, &id, d, &n)) {
            ss.bad_lines++;
            continue;
        }
        if (n > 8)
            ss.long_frames++;
        if (id == ADMIN_QUERY || id == ADMIN_REPLY) {
            ss.admin++;
            continue;
        }
        stream *st = stream_of(&ss, id);
        if (!st || !append(st, d, n)) {
            fprintf(stderr, "rig-candump-check: too many ids or out of memory\n");
            return 2;
        }
        st->can_frames++;
    }
    if (path)
        fclose(f);
    bool ok = ss.bad_lines == 0 && ss.long_frames == 0;
    if (ss.bad_lines)
        printf("FAIL %u lines are not candump -L frames\n", ss.bad_lines);
    if (ss.long_frames)
        printf("FAIL %u frames longer than 8 bytes on a classic CAN bus\n", ss.long_frames);
    unsigned nodes = 0;
    for (size_t i = 0; i < ss.n; i++) {
        stream *st = &ss.s[i];
        cut_frames(st);
        bool to_node = (st->id & 1) == 0;
        bool paired = false;
        for (size_t k = 0; k < ss.n; k++)
            paired |= ss.s[k].id == (to_node ? st->id + 1 : st->id - 1);
        bool good = st->drops == 0 && st->leftover == 0 && st->frames > 0 && paired;
        if (to_node && good && st->codes[ST_KAT_CMD_SEND_BLOCK] >= min_blocks)
            nodes++;
        if (!good || (to_node && st->codes[ST_KAT_CMD_SEND_BLOCK] < min_blocks))
            ok = false;
        if (!quiet || !good) {
            printf("%s id 0x%03x %s: %u CAN frames, %zu bytes, %u Katapult frames", good ? "ok  " : "FAIL",
                   st->id, to_node ? "host->node" : "node->host", st->can_frames, st->len, st->frames);
            for (int c = 0; c < 256; c++)
                if (st->codes[c])
                    printf(" %s=%u", st_kat_code_name((uint8_t)c), st->codes[c]);
            if (st->drops || st->leftover || !paired)
                printf(" (%u bad, %zu bytes left over%s)", st->drops, st->leftover,
                       paired ? "" : ", no answer stream");
            printf("\n");
        }
        free(st->buf);
    }
    if (nodes < want_nodes) {
        printf("FAIL %u node session(s) with >= %u blocks, expected at least %u\n", nodes,
               min_blocks, want_nodes);
        ok = false;
    }
    printf("%s %u admin frames, %u node session(s)\n", ok ? "ok  " : "FAIL", ss.admin, nodes);
    return ok ? 0 : 1;
}
