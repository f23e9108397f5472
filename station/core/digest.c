/* Digest wrappers over OpenSSL EVP (no hand-written hash). */
#include "digest.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct st_digest {
    EVP_MD_CTX *ctx;
    const EVP_MD *md;
};

st_digest *st_digest_new(st_digest_kind kind)
{
    st_digest *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->md = kind == ST_DIGEST_SHA1 ? EVP_sha1() : EVP_sha256();
    d->ctx = EVP_MD_CTX_new();
    if (!d->ctx || EVP_DigestInit_ex(d->ctx, d->md, NULL) != 1) {
        EVP_MD_CTX_free(d->ctx);
        free(d);
        return NULL;
    }
    return d;
}

void st_digest_update(st_digest *d, const void *data, size_t len)
{
    if (len)
        EVP_DigestUpdate(d->ctx, data, len);
}

size_t st_digest_final(st_digest *d, uint8_t out[ST_DIGEST_MAX])
{
    unsigned int n = 0;
    EVP_DigestFinal_ex(d->ctx, out, &n);
    return n;
}

void st_digest_reset(st_digest *d)
{
    EVP_DigestInit_ex(d->ctx, d->md, NULL);
}

void st_digest_free(st_digest *d)
{
    if (!d)
        return;
    EVP_MD_CTX_free(d->ctx);
    free(d);
}

void st_sha256(const void *data, size_t len, uint8_t out[ST_SHA256_LEN])
{
    unsigned int n = 0;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void st_sha1(const void *data, size_t len, uint8_t out[ST_SHA1_LEN])
{
    unsigned int n = 0;
    EVP_Digest(data, len, out, &n, EVP_sha1(), NULL);
}

void st_hex(const uint8_t *bytes, size_t len, bool upper, char *out)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

int st_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool st_unhex(const char *hex, uint8_t *out, size_t len)
{
    if (strlen(hex) != 2 * len)
        return false;
    for (size_t i = 0; i < len; i++) {
        int hi = st_hexval(hex[2 * i]), lo = st_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}
