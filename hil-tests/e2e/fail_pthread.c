/* Test helper, preloaded into the station binary (LD_PRELOAD): pthread_create succeeds for
 * the first $STATION_TEST_PTHREAD_OK calls and then fails with EAGAIN, as it does when a
 * station runs out of threads or memory. Not part of the station. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

int pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    static atomic_int calls;
    const char *ok = getenv("STATION_TEST_PTHREAD_OK");
    if (ok && atomic_fetch_add(&calls, 1) >= atoi(ok))
        return EAGAIN;
    create_fn real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
    return real ? real(t, a, fn, arg) : ENOSYS;
}
