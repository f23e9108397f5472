/* SHA-1 and SHA-256 through OpenSSL's libcrypto (EVP): incremental and one-shot.
 * SHA-1 exists because Katapult's flashtool prints it and operators compare it;
 * SHA-256 is what reports and job files pin. */
#ifndef STATION_CORE_DIGEST_H
#define STATION_CORE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_SHA1_LEN 20
#define ST_SHA256_LEN 32
#define ST_DIGEST_MAX 32

typedef enum st_digest_kind { ST_DIGEST_SHA1, ST_DIGEST_SHA256 } st_digest_kind;

typedef struct st_digest st_digest; /* opaque; free with st_digest_free */

/* Returns NULL only when out of memory. */
st_digest *st_digest_new(st_digest_kind kind);
void st_digest_update(st_digest *d, const void *data, size_t len);
/* Writes the digest (20 or 32 bytes) to out and returns its length. The object can be
 * reused after st_digest_reset. */
size_t st_digest_final(st_digest *d, uint8_t out[ST_DIGEST_MAX]);
void st_digest_reset(st_digest *d);
void st_digest_free(st_digest *d);

void st_sha256(const void *data, size_t len, uint8_t out[ST_SHA256_LEN]);
void st_sha1(const void *data, size_t len, uint8_t out[ST_SHA1_LEN]);

/* Hex-encode len bytes into out (2*len+1 bytes), lower or upper case. */
void st_hex(const uint8_t *bytes, size_t len, bool upper, char *out);
/* Value of one hex digit (either case), or -1. */
int st_hexval(char c);
/* Parse exactly len bytes of hex (either case) from a NUL-terminated string;
 * returns false on wrong length or a non-hex character. */
bool st_unhex(const char *hex, uint8_t *out, size_t len);

#endif
