/* An LD_PRELOAD shim that moves only the wall clock (CLOCK_REALTIME) of a process.
 *
 * The offset, in seconds (may be negative, fractional), is read from the file named
 * by EDGE_AGENT_CLOCK_SHIFT_FILE, again at most every 20 ms of monotonic time, so a
 * test can step the clock while the process runs. A second word "unsync" in that
 * file makes adjtimex() report STA_UNSYNC, as the kernel does before NTP has set the
 * clock. The monotonic clock, sleeps and timed waits are left alone (libfaketime
 * 0.9.10 moves them too, and Python's time.sleep then fails).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_adjtimex)(struct timex *);
static double offset;
static int unsync;
static double next_read = -1.0;

static double mono_now(void) {
    struct timespec ts;
    real_clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void refresh(void) {
    if (!real_clock_gettime)
        real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    double now = mono_now();
    if (now < next_read)
        return;
    next_read = now + 0.02;
    const char *path = getenv("EDGE_AGENT_CLOCK_SHIFT_FILE");
    if (!path)
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    double value;
    char word[16] = "";
    int n = fscanf(f, "%lf %15s", &value, word);
    fclose(f);
    if (n >= 1)
        offset = value;
    unsync = (n == 2 && strcmp(word, "unsync") == 0);
}

static void shift(struct timespec *ts) {
    double whole = (double)ts->tv_sec + ts->tv_nsec / 1e9 + offset;
    if (whole < 0)
        whole = 0;
    ts->tv_sec = (time_t)whole;
    ts->tv_nsec = (long)((whole - (double)ts->tv_sec) * 1e9);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    refresh();
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        shift(ts);
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

int adjtimex(struct timex *buf) {
    refresh();
    if (!real_adjtimex)
        real_adjtimex = dlsym(RTLD_NEXT, "adjtimex");
    int rc = real_adjtimex(buf);
    if (rc >= 0 && buf) {
        if (unsync)
            buf->status |= STA_UNSYNC;
        else
            buf->status &= ~STA_UNSYNC;
        rc = unsync ? TIME_ERROR : TIME_OK;
    }
    return rc;
}
