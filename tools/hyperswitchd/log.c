/*
 * log.c - hyperswitchd's log: stderr (with a UTC timestamp) or syslog,
 * filtered by a level that hsctl can change while it runs. Called from
 * any thread: the library logs from data-path and worker threads.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <syslog.h>
#include <sys/time.h>
#include <time.h>

#include "hsd.h"

static _Atomic int level = HS_LOG_INFO;
static bool to_syslog;
/* a daemon not yet detached: its warnings and errors go to the terminal
 * that started it as well, where the reason for a failed start belongs */
static _Atomic bool also_stderr;

void hsd_log_init(enum hs_log_level l, bool use_syslog)
{
	atomic_store(&level, (int)l);
	to_syslog = use_syslog;
	if (use_syslog)
		openlog("hyperswitchd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void hsd_log_stderr_too(bool on)
{
	atomic_store(&also_stderr, on);
}

void hsd_log_set_level(enum hs_log_level l)
{
	atomic_store(&level, (int)l);
}

enum hs_log_level hsd_log_level(void)
{
	return (enum hs_log_level)atomic_load(&level);
}

static void emit(enum hs_log_level l, const char *msg)
{
	if (to_syslog) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
		syslog(prio[l], "%s", msg);
		if (l > HS_LOG_WARN ||
		    !atomic_load_explicit(&also_stderr, memory_order_relaxed))
			return;
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char ts[32];
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	/* one fprintf per line: stdio locks the stream, lines never mix */
	fprintf(stderr, "%s.%03ldZ [%s] %s\n", ts, (long)(tv.tv_usec / 1000),
		hsd_level_name(l), msg);
}

void hsd_log(enum hs_log_level l, const char *fmt, ...)
{
	if ((int)l > atomic_load_explicit(&level, memory_order_relaxed))
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit(l, msg);
}

/* The library's first error while a call of this thread runs (a port's
 * add): it says more than the errno the call returns. */
static _Thread_local char *cap_buf;
static _Thread_local size_t cap_len;

void hsd_log_capture(char *buf, size_t len)
{
	cap_buf = buf;
	cap_len = len;
	if (buf && len)
		buf[0] = '\0';
}

void hsd_log_lib(void *opaque, enum hs_log_level l, const char *msg)
{
	(void)opaque;
	if (cap_buf && l == HS_LOG_ERROR && !cap_buf[0])
		snprintf(cap_buf, cap_len, "%s", msg);
	if ((int)l <= atomic_load_explicit(&level, memory_order_relaxed))
		emit(l, msg);
}
