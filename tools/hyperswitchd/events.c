/*
 * events.c - the library's events (link changes, broken queues) counted
 * per port for show and the metrics. The library calls back from any of
 * its threads, possibly mid-round: the callback only queues the event
 * under a lock and wakes the loop (uv_async), which does the rest on the
 * thread that owns the port list. A full queue drops events and counts
 * them (events_lost in the log), never blocks the data path.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "hsd.h"

#define QLEN 256

struct item {
	char port[HS_PORT_NAME_MAX];
	enum hs_event_type type;
	bool up;
	char reason[96];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct item q[QLEN];
static unsigned head, count;
static uint64_t lost;
static uv_async_t async;
static bool started;

static void on_event(void *opaque, const struct hs_event *ev)
{
	(void)opaque;
	pthread_mutex_lock(&lock);
	if (count == QLEN) {
		lost++;
	} else {
		struct item *it = &q[(head + count++) % QLEN];
		snprintf(it->port, sizeof(it->port), "%s", hs_port_name(ev->port));
		it->type = ev->type;
		it->up = ev->link_up;
		snprintf(it->reason, sizeof(it->reason), "%s",
			 ev->type == HS_EVENT_BROKEN && ev->reason ? ev->reason : "");
	}
	pthread_mutex_unlock(&lock);
	uv_async_send(&async);
}

static void on_async(uv_async_t *a)
{
	struct hsd *d = a->data;
	for (;;) {
		struct item it;
		uint64_t n_lost;
		pthread_mutex_lock(&lock);
		bool any = count > 0;
		if (any) {
			it = q[head];
			head = (head + 1) % QLEN;
			count--;
		}
		n_lost = lost;
		lost = 0;
		pthread_mutex_unlock(&lock);
		if (n_lost)
			hsd_log(HS_LOG_WARN, "events: %llu lost (queue full)",
				(unsigned long long)n_lost);
		if (!any)
			return;
		struct hsd_port *p = hsd_port_get(d, it.port);
		if (!p)
			continue; /* gone since */
		if (it.type == HS_EVENT_LINK) {
			p->link_changes++;
		} else if (it.type == HS_EVENT_BROKEN) {
			p->broken++;
			snprintf(p->last_broken, sizeof(p->last_broken), "%s", it.reason);
		}
	}
}

int hsd_events_start(struct hsd *d)
{
	int rc = uv_async_init(d->loop, &async, on_async);
	if (rc)
		return rc;
	async.data = d;
	started = true;
	return hs_switch_set_event_fn(d->sw, on_event, d);
}

void hsd_events_stop(struct hsd *d)
{
	if (!started)
		return;
	/* when this returns the callback runs no more: the async may close */
	hs_switch_set_event_fn(d->sw, NULL, NULL);
	uv_close((uv_handle_t *)&async, NULL);
	started = false;
}
