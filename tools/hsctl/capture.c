/*
 * capture.c - "capture PORT -w FILE": after its answer the daemon sends
 * the port's frames as binary records on the same connection
 * (docs/control.md, "capture"); they go to pcap files (dump.c) until -c
 * frames, SIGINT or SIGTERM, or the daemon's end record. Closing the
 * connection is what ends the capture at the daemon.
 *
 * Records come however the socket cuts them: they are put together in a
 * buffer that holds the largest one the snaplen allows plus room to read;
 * a payload we do not use (a type we do not know) is skipped as it comes,
 * however long, up to the 16 MiB that tell a stream out of step.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hsctl.h"

#define HEADER 16u		/* type, length, 2 reserved: little-endian u32 */
#define FRAME_HEADER 16u	/* ns since the epoch (u64), original length, reserved */
#define COUNTERS_LEN 24u	/* sent, dropped by the switch, by the daemon (u64) */
#define RECORD_MAX (16u << 20)	/* a longer payload: the stream is out of step */
#define READ_CHUNK (256u << 10)

enum { REC_FRAME = 1, REC_COUNTERS = 2, REC_END = 3 };
enum stop { RUNNING, STOP_COUNT, STOP_SIGNAL, STOP_END };

struct options {
	const char *file;	/* -w */
	long long count;	/* -c; 0: no limit */
	double rotate_s;	/* -G; 0: one file */
	const char *direction;	/* for the messages */
};

struct capture {
	struct hsctl *h;
	struct hsctl_stream s;	/* s.buf[start, end): read, not yet used */
	size_t start, end, cap;
	size_t max_need;	/* the most of a record that must be in s.buf at once */
	uint64_t skip;		/* bytes of a payload we skip, still to come */
	uint32_t snaplen;
	long long count, frames;
	bool counted;		/* a counters record came: */
	uint64_t counters[3];	/* the last one's sent, switch and daemon drops */
	struct dump *out;
	enum stop stop;
};

/* ---- signals ---------------------------------------------------------------- */

static volatile sig_atomic_t got_signal;
static int wake[2] = {-1, -1};	/* the handler writes, poll() wakes */

static void on_signal(int sig)
{
	int saved = errno;
	got_signal = sig;
	ssize_t n = write(wake[1], "", 1);	/* a full pipe is awake already */
	(void)n;
	errno = saved;
}

/* SIGINT and SIGTERM end the capture cleanly; a second one kills
 * (SA_RESETHAND), for when the file's disk or reader hangs. SA_RESTART:
 * a write interrupted would be a stdio error. A signal ignored when we
 * started (a background job's SIGINT) stays ignored. SIGPIPE is ignored:
 * a reader of -w - that went away is a write error to report. */
static int catch_signals(struct sigaction old[3])
{
	static const int sigs[] = {SIGINT, SIGTERM};
	if (pipe(wake)) {
		perror("hsctl: pipe");
		return HSCTL_ECONN;
	}
	for (int i = 0; i < 2; i++) {	/* cannot fail on a pipe of ours */
		fcntl(wake[i], F_SETFL, O_NONBLOCK);
		fcntl(wake[i], F_SETFD, FD_CLOEXEC);
	}
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND | SA_RESTART};
	struct sigaction ign = {.sa_handler = SIG_IGN};
	sigemptyset(&sa.sa_mask);
	sigemptyset(&ign.sa_mask);
	for (int i = 0; i < 2; i++) {
		sigaction(sigs[i], &sa, &old[i]);
		if (old[i].sa_handler == SIG_IGN)
			sigaction(sigs[i], &old[i], NULL);
	}
	sigaction(SIGPIPE, &ign, &old[2]);
	return HSCTL_OK;
}

static void restore_signals(const struct sigaction old[3])
{
	sigaction(SIGINT, &old[0], NULL);
	sigaction(SIGTERM, &old[1], NULL);
	sigaction(SIGPIPE, &old[2], NULL);
	for (int i = 0; i < 2; i++) {
		if (wake[i] >= 0)
			close(wake[i]);
		wake[i] = -1;
	}
}

/* ---- records ---------------------------------------------------------------- */

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

__attribute__((format(printf, 2, 3)))
static int protocol_error(const struct capture *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "hsctl: %s: capture: bad record: ", c->h->socket);
	vfprintf(stderr, fmt, ap);
	fputs("\n", stderr);
	va_end(ap);
	return HSCTL_ECONN;
}

/* How much of a record must be in the buffer to use it (the rest of its
 * payload is skipped); checks the length its type allows. Types past 3
 * are later versions' (skipped); 0 is none (a stream out of step). */
static int record_need(const struct capture *c, uint32_t type, uint32_t len, size_t *need)
{
	if (len > RECORD_MAX)
		return protocol_error(c, "type %u, %u bytes (16 MiB at most)", type, len);
	switch (type) {
	case 0:
		return protocol_error(c, "type 0");
	case REC_FRAME:
		if (len < FRAME_HEADER || len - FRAME_HEADER > c->snaplen)
			return protocol_error(c, "a frame of %u bytes (%u to %u)", len,
					      FRAME_HEADER, FRAME_HEADER + c->snaplen);
		*need = HEADER + len;
		return HSCTL_OK;
	case REC_COUNTERS:
		/* longer: a later version's counters follow ours */
		if (len < COUNTERS_LEN)
			return protocol_error(c, "counters of %u bytes (%u at least)", len,
					      COUNTERS_LEN);
		*need = HEADER + COUNTERS_LEN;
		return HSCTL_OK;
	default:
		*need = HEADER;
		return HSCTL_OK;
	}
}

static int use_frame(struct capture *c, const unsigned char *p, uint32_t len)
{
	uint64_t ts = le64(p);
	uint32_t orig = le32(p + 8), caplen = len - FRAME_HEADER;
	/* Fewer bytes than min(orig, snaplen) still make a valid pcap record. */
	if (caplen > orig)
		return protocol_error(c, "%u bytes of a frame of %u", caplen, orig);
	int rc = dump_frame(c->out, ts, orig, p + FRAME_HEADER, caplen);
	if (!rc && ++c->frames == c->count)
		c->stop = STOP_COUNT;
	return rc;
}

static int use_record(struct capture *c, uint32_t type, uint32_t len, const unsigned char *p)
{
	switch (type) {
	case REC_FRAME:
		return use_frame(c, p, len);
	case REC_COUNTERS:
		for (int i = 0; i < 3; i++)
			c->counters[i] = le64(p + 8 * i);
		c->counted = true;
		return HSCTL_OK;
	case REC_END:
		c->stop = STOP_END;
		return HSCTL_OK;
	default:
		return HSCTL_OK;
	}
}

/* Uses the complete records in the buffer; what is left is part of one. A
 * signal is seen between records, so a stream that never pauses does not
 * hold it off. */
static int take_records(struct capture *c)
{
	while (c->stop == RUNNING) {
		size_t have = c->end - c->start, need = 0;
		if (got_signal) {
			c->stop = STOP_SIGNAL;
			break;
		}
		if (c->skip) {
			size_t n = have < c->skip ? have : (size_t)c->skip;
			c->start += n;
			c->skip -= n;
			if (c->skip)
				return HSCTL_OK;
			continue;
		}
		if (have < HEADER)
			return HSCTL_OK;
		const unsigned char *p = (const unsigned char *)c->s.buf + c->start;
		uint32_t type = le32(p), len = le32(p + 4);
		int rc = record_need(c, type, len, &need);
		if (rc || have < need)
			return rc;
		if ((rc = use_record(c, type, len, p + HEADER)))
			return rc;
		c->start += need;
		c->skip = HEADER + (uint64_t)len - need;
	}
	return HSCTL_OK;
}

/* ---- the connection ----------------------------------------------------------- */

/* Moves what is left to the front when the read room or the record's
 * room (max_need from start) runs short: it is part of one record, so
 * at most max_need bytes move, once per READ_CHUNK or more read. */
static void make_room(struct capture *c)
{
	if (c->start == c->end) {
		c->start = c->end = 0;
	} else if (c->cap - c->end < READ_CHUNK || c->cap - c->start < c->max_need) {
		memmove(c->s.buf, c->s.buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
}

static int lost(const struct capture *c, const char *what, int err)
{
	fprintf(stderr, "hsctl: %s: %s: %s\n", c->h->socket, what, strerror(err));
	return HSCTL_ECONN;
}

/* The end of the stream without an end record: the daemon went away (it
 * sends one when the port does). */
static int closed(const struct capture *c)
{
	fprintf(stderr, "hsctl: %s: the daemon closed the connection %s\n", c->h->socket,
		c->end > c->start || c->skip ? "in the middle of a record"
					     : "without ending the capture");
	return HSCTL_ECONN;
}

/* Waits for the socket or a signal; recv() and got_signal tell which. */
static int wait_input(const struct capture *c)
{
	struct pollfd p[2] = {{.fd = c->s.fd, .events = POLLIN}, {.fd = wake[0], .events = POLLIN}};
	if (poll(p, 2, -1) < 0 && errno != EINTR)
		return lost(c, "poll", errno);
	return HSCTL_OK;
}

/* Reads what there is; with nothing yet, flushes the file (a reader of it
 * or of the pipe sees each frame as soon as the stream pauses) and waits.
 * No deadline: a capture lasts until it is stopped. */
static int read_more(struct capture *c)
{
	make_room(c);
	while (!got_signal) {
		ssize_t n = recv(c->s.fd, c->s.buf + c->end, c->cap - c->end, 0);
		if (n > 0) {
			c->end += (size_t)n;
			return HSCTL_OK;
		}
		if (n == 0)
			return closed(c);
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return lost(c, "recv", errno);
		int rc = errno == EINTR ? HSCTL_OK : dump_flush(c->out);
		if (!rc)
			rc = wait_input(c);
		if (rc)
			return rc;
	}
	c->stop = STOP_SIGNAL;
	return HSCTL_OK;
}

static int run(struct capture *c)
{
	int rc = HSCTL_OK;
	while (!rc && c->stop == RUNNING) {
		rc = take_records(c);
		if (!rc && c->stop == RUNNING)
			rc = read_more(c);
	}
	return rc;
}

/* ---- the command ------------------------------------------------------------ */

/* The answer: {"port": ..., "linktype": 1, "snaplen": 262144}. The buffer
 * becomes the stream's (what came with the answer is in it already). */
static int started(struct capture *c, const json_t *r, int *linktype)
{
	const json_t *lt = json_object_get(r, "linktype"), *sl = json_object_get(r, "snaplen");
	if (!json_is_integer(lt) || json_integer_value(lt) < 0 || json_integer_value(lt) > INT_MAX)
		return hsctl_malformed("capture", "no linktype");
	if (!json_is_integer(sl) || json_integer_value(sl) < 1 ||
	    json_integer_value(sl) > RECORD_MAX - FRAME_HEADER)
		return hsctl_malformed("capture", "no snaplen (1 to 16 MiB)");
	*linktype = (int)json_integer_value(lt);
	c->snaplen = (uint32_t)json_integer_value(sl);
	c->max_need = HEADER + FRAME_HEADER + c->snaplen;
	if (c->max_need < HEADER + COUNTERS_LEN)
		c->max_need = HEADER + COUNTERS_LEN;
	c->end = c->s.len;
	c->cap = c->max_need + 2 * READ_CHUNK;
	if (c->cap < c->end)
		c->cap = c->end;
	char *buf = realloc(c->s.buf, c->cap);
	if (!buf)
		return hsctl_nomem();
	c->s.buf = buf;
	return HSCTL_OK;
}

/* The last line, on stderr as all the capture's messages (stdout may be
 * the pcap stream). The drops are the daemon's last counters. */
static void summary(const struct capture *c)
{
	if (c->stop == STOP_END)
		fprintf(stderr, "hsctl: capture: the daemon ended it (the port went away)\n");
	if (!c->counted) {
		fprintf(stderr, "%lld frames captured (ended before the daemon's drop counters, "
			"sent once a second)\n", c->frames);
		return;
	}
	fprintf(stderr, "%lld frames captured, %llu dropped (%llu by the switch, %llu by the "
		"daemon)\n", c->frames, (unsigned long long)(c->counters[1] + c->counters[2]),
		(unsigned long long)c->counters[1], (unsigned long long)c->counters[2]);
}

/* From the answer to the end: 0 when stopped by -c, a signal or the
 * daemon's end record; the file is flushed and closed however it ends. */
static int capture(struct capture *c, const struct options *o, const json_t *r)
{
	struct sigaction old[3];
	int linktype = 0, rc = started(c, r, &linktype);
	if (rc)
		return rc;
	if ((rc = catch_signals(old)))
		return rc;
	rc = dump_open(&c->out, o->file, o->rotate_s, linktype, (int)c->snaplen);
	if (!rc) {
		char buf[32];
		fprintf(stderr, "capturing on %s (%s), link-type %d, snapshot length %u bytes\n",
			hsctl_text(json_object_get(r, "port"), buf, sizeof(buf)), o->direction,
			linktype, c->snaplen);
		rc = run(c);
		hsctl_stream_close(&c->s);	/* ends the capture at the daemon */
		int crc = dump_close(c->out);
		rc = rc ? rc : crc;
		summary(c);
	}
	restore_signals(old);
	return rc;
}

static int parse_options(struct hsctl *h, const char *count, const char *rotate,
			 struct options *o)
{
	if (h->json)
		return hsctl_usage_error("capture: no --json: frames go to the pcap file, "
					 "messages to stderr");
	if (!o->file)
		return hsctl_usage_error("capture: -w FILE is missing (- for stdout)");
	if (count && (!hsctl_parse_int(count, &o->count) || o->count < 1))
		return hsctl_usage_error("-c: not a number of frames above 0: %s", count);
	if (rotate && (!hsctl_parse_seconds(rotate, &o->rotate_s) || o->rotate_s * 1e9 < 1))
		return hsctl_usage_error("-G: not a number of seconds above 0: %s", rotate);
	/* Without a conversion every window would truncate the same file. */
	if (rotate && !strchr(o->file, '%'))
		return hsctl_usage_error("-G: FILE must be a strftime(3) pattern, such as "
					 "cap-%%Y%%m%%d-%%H%%M%%S.pcap: %s", o->file);
	return HSCTL_OK;
}

/* The request's args from the port and the options. */
static int capture_args(const char *port, const char *snaplen, bool rx, bool tx, json_t *args)
{
	int rc = hsctl_set_string(args, "port", port);
	if (!rc)
		rc = hsctl_set_direction(args, rx, tx, "capture");
	if (!rc && snaplen)	/* its range (64..262144) is the daemon's to check */
		rc = hsctl_set_int(args, "snaplen", snaplen, "-s");
	return rc;
}

/* capture PORT -w FILE [-c COUNT] [-G SECONDS] [--rx|--tx] [-s SNAPLEN]. After
 * the command -s is the snaplen, as in tcpdump (the socket: --socket, or
 * -s before the command). */
int hsctl_cmd_capture(struct hsctl *h, int argc, char **argv)
{
	const char *count = NULL, *rotate = NULL, *snaplen = NULL;
	bool rx = false, tx = false;
	struct options o = {.direction = "both directions"};
	const struct opt opts[] = {
		{"-w", "--write", &o.file, NULL}, {"-c", "--count", &count, NULL},
		{"-G", "--rotate", &rotate, NULL}, {"-s", "--snaplen", &snaplen, NULL},
		{"--rx", NULL, NULL, &rx}, {"--tx", NULL, NULL, &tx}, {NULL, NULL, NULL, NULL},
	};
	int n, rc = hsctl_words(h, "capture", argc, argv, opts, 1, 1, &n);
	if (!rc)
		rc = parse_options(h, count, rotate, &o);
	if (rc)
		return rc;
	json_t *args = json_object(), *r;
	if ((rc = capture_args(argv[0], snaplen, rx, tx, args))) {
		json_decref(args);
		return rc;
	}
	o.direction = rx ? "rx" : tx ? "tx" : o.direction;
	struct capture c = {.h = h, .count = o.count};
	if ((rc = hsctl_call_stream(h, "capture", args, &r, &c.s)))
		return rc;
	rc = capture(&c, &o, r);
	json_decref(r);
	hsctl_stream_close(&c.s);
	return rc;
}
