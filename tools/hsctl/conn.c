/*
 * conn.c - one request, one response (docs/control.md, "Framing"): a JSON
 * object on a line each way, over a fresh connection to the daemon's unix
 * socket. The socket is non-blocking and every wait is a poll() bounded by
 * one deadline (-t), so a daemon that hangs costs at most that long.
 * "capture" keeps the connection after the answer: binary records follow
 * it (capture.c reads them).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hsctl.h"

#define REQUEST_MAX 65536		/* the daemon's limit on a request line */
#define RESPONSE_MAX (16u << 20)	/* ours on a response line */
#define READ_CHUNK 65536

struct conn {
	const struct hsctl *h;
	const char *command;
	int fd;
	int64_t deadline;		/* CLOCK_MONOTONIC ns; 0: none */
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* poll()'s timeout for what is left: -1 without a deadline, 0 once past. */
static int ms_left(const struct conn *c)
{
	if (!c->deadline)
		return -1;
	int64_t left = c->deadline - now_ns();
	if (left <= 0)
		return 0;
	int64_t ms = (left + 999999) / 1000000;	/* up: never wake just before */
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* The message for a failure of err (an errno); returns HSCTL_ECONN. */
static int fail(const struct conn *c, const char *what, int err)
{
	if (err == ETIMEDOUT)
		fprintf(stderr, "hsctl: %s: no answer to %s within %g s\n", c->h->socket,
			c->command, c->h->timeout_s);
	else
		fprintf(stderr, "hsctl: %s: %s: %s\n", c->h->socket, what, strerror(err));
	return HSCTL_ECONN;
}

/* Waits for events on the socket; 0 or an errno (ETIMEDOUT). */
static int wait_fd(const struct conn *c, short events)
{
	for (;;) {
		int ms = ms_left(c);
		if (!ms)
			return ETIMEDOUT;
		struct pollfd p = {.fd = c->fd, .events = events};
		int n = poll(&p, 1, ms);
		if (n > 0)	/* errors and hangups too: the next call tells */
			return 0;
		if (n < 0 && errno != EINTR)
			return errno;
	}
}

static void pause_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000};
	nanosleep(&ts, NULL);
}

/* The end of a connect that is in progress: 0 or an errno. */
static int connect_wait(const struct conn *c)
{
	int err = wait_fd(c, POLLOUT);
	socklen_t len = sizeof(err);
	if (!err && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	return err;
}

/* A non-blocking connect on a unix socket completes at once or fails with
 * EAGAIN when the listen backlog is full: the daemon is busy, so we retry
 * until the deadline. EINPROGRESS is handled for completeness. */
static int conn_open(struct conn *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, c->h->socket, strlen(c->h->socket) + 1);	/* length checked */
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return fail(c, "socket", errno);
	while (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno, ms = ms_left(c);
		if (err == EAGAIN && !ms)
			return fail(c, "cannot connect", ETIMEDOUT);
		if (err == EAGAIN) {
			pause_ms(ms < 0 || ms > 10 ? 10 : ms);
			continue;
		}
		if (err == EINPROGRESS || err == EINTR)
			err = connect_wait(c);
		if (err)
			return fail(c, "cannot connect", err);
		break;
	}
	return HSCTL_OK;
}

/* Sends the request. A daemon that closed the connection at once may
 * have said why first (too many connections: EBUSY): on EPIPE or
 * ECONNRESET, *closed is set and nothing printed, for the caller to read
 * that line. */
static int conn_send(struct conn *c, const char *buf, size_t len, bool *closed)
{
	while (len) {
		/* MSG_NOSIGNAL: a daemon gone is an error to report, not SIGPIPE. */
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0) {
			buf += n;
			len -= (size_t)n;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int err = wait_fd(c, POLLOUT);
			if (err)
				return fail(c, "send", err);
		} else if ((errno == EPIPE || errno == ECONNRESET) && !*closed) {
			*closed = true;
			return HSCTL_ECONN;
		} else if (errno != EINTR) {
			return fail(c, "send", errno);
		}
	}
	return HSCTL_OK;
}

/* Makes room for more of the line: doubling up to RESPONSE_MAX plus the
 * newline. A line that does not fit is refused. */
static int grow(const struct conn *c, char **buf, size_t *cap)
{
	if (*cap >= RESPONSE_MAX + 1) {
		fprintf(stderr, "hsctl: %s: the answer to %s is longer than %u MiB\n",
			c->h->socket, c->command, RESPONSE_MAX >> 20);
		return HSCTL_ECONN;
	}
	size_t ncap = *cap ? *cap * 2 : READ_CHUNK;
	if (ncap > RESPONSE_MAX + 1)
		ncap = RESPONSE_MAX + 1;
	char *nbuf = realloc(*buf, ncap);
	if (!nbuf)
		return hsctl_nomem();
	*buf = nbuf;
	*cap = ncap;
	return HSCTL_OK;
}

/* Reads up to the first newline, however the bytes come; *buf (freed by
 * the caller, also on failure) holds the line, *len its length without the
 * newline, *used all that was read: the bytes after the newline belong to
 * a stream that follows the answer (capture), if any. */
static int conn_read_line(struct conn *c, char **buf, size_t *len, size_t *usedp)
{
	size_t used = 0, cap = 0;
	for (;;) {
		int rc = used == cap ? grow(c, buf, &cap) : HSCTL_OK;
		if (rc)
			return rc;
		ssize_t n = recv(c->fd, *buf + used, cap - used, 0);
		if (n > 0) {
			char *nl = memchr(*buf + used, '\n', (size_t)n);
			used += (size_t)n;
			if (nl) {
				*len = (size_t)(nl - *buf);
				*usedp = used;
				return HSCTL_OK;
			}
		} else if (n == 0) {
			fprintf(stderr, "hsctl: %s: the daemon closed the connection %s\n",
				c->h->socket, used ? "in the middle of its answer"
						   : "without answering");
			return HSCTL_ECONN;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int err = wait_fd(c, POLLIN);
			if (err)
				return fail(c, "recv", err);
		} else if (errno != EINTR) {
			return fail(c, "recv", errno);
		}
	}
}

/* Counters are unsigned 64-bit and jansson's integers signed: one past
 * 2^63 fails the parse, so such an answer is read again with every
 * integer as a double (exact to 2^53, enough to print and to rate). */
static json_t *parse(const struct conn *c, const char *line, size_t len)
{
	json_error_t err;
	json_t *v = json_loadb(line, len, 0, &err);
	if (!v && strstr(err.text, "too big"))
		v = json_loadb(line, len, JSON_DECODE_INT_AS_REAL, &err);
	if (!v)
		fprintf(stderr, "hsctl: %s: the answer to %s is not JSON: %s (column %d)\n",
			c->h->socket, c->command, err.text, err.column);
	else if (!json_is_object(v))	/* json_loadb takes arrays too */
		fprintf(stderr, "hsctl: %s: the answer to %s is not an object\n",
			c->h->socket, c->command);
	else
		return v;
	json_decref(v);
	return NULL;
}

/* Connects, sends the request line and reads the answer line. With s,
 * the connection and the bytes read past the line go to s on success
 * (whatever the answer says: the caller checks it first). */
static int exchange(struct conn *c, const char *request, json_t **response,
		    struct hsctl_stream *s)
{
	char *buf = NULL;
	size_t len = 0, used = 0;
	bool closed = false;
	int rc = conn_open(c);
	if (!rc)
		rc = conn_send(c, request, strlen(request), &closed);
	int send_err = errno;
	if (!rc || closed)
		rc = conn_read_line(c, &buf, &len, &used);
	if (!rc && !(*response = parse(c, buf, len)))
		rc = HSCTL_ECONN;
	if (closed) {
		/* the daemon's answer before it closed: only an error can be
		 * (the request never arrived whole), and no stream follows */
		if (!rc && !json_is_false(json_object_get(*response, "ok"))) {
			json_decref(*response);
			*response = NULL;
			rc = HSCTL_ECONN;
		}
		if (rc)
			fprintf(stderr, "hsctl: %s: send: %s\n", c->h->socket, strerror(send_err));
		s = NULL;
	}
	if (!rc && s) {
		used -= len + 1;
		memmove(buf, buf + len + 1, used);
		*s = (struct hsctl_stream){.fd = c->fd, .buf = buf, .len = used};
		return HSCTL_OK;
	}
	if (c->fd >= 0)
		close(c->fd);
	free(buf);
	return rc;
}

/* The request line: compact JSON has no newline in it. */
static int request_line(const char *command, json_t *args, json_t *id, char **line)
{
	json_t *req = json_object();
	if (json_object_set_new(req, "version", json_integer(1)) ||
	    json_object_set(req, "id", id) ||
	    json_object_set_new(req, "command", json_string(command)) ||
	    json_object_set(req, "args", args)) {
		json_decref(req);
		return hsctl_nomem();
	}
	char *s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	size_t len = s ? strlen(s) : 0;
	char *nl = s ? realloc(s, len + 2) : NULL;
	if (!nl) {
		free(s);
		return hsctl_nomem();
	}
	memcpy(nl + len, "\n", 2);
	if (len + 1 > REQUEST_MAX) {
		free(nl);
		return hsctl_usage_error("%s: the request would be %zu bytes, the daemon "
					 "takes %d at most", command, len + 1, REQUEST_MAX);
	}
	*line = nl;
	return HSCTL_OK;
}

/* The daemon's error: "hsctl: CODE: message". */
static int daemon_error(const struct conn *c, const json_t *resp)
{
	const json_t *e = json_object_get(resp, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	if (!code)
		return hsctl_malformed(c->command, "an error without a code");
	if (msg)
		fprintf(stderr, "hsctl: %s: %s\n", code, msg);
	else
		fprintf(stderr, "hsctl: %s\n", code);
	return HSCTL_EDAEMON;
}

/* Checks the response against the request: our id, "ok", and a result
 * object or an error object. An error may come without the id: the daemon
 * answers a request it could not read (EPROTO, EMSGSIZE) that way. */
static int unpack(const struct conn *c, json_t *resp, const json_t *id, json_t **result)
{
	const json_t *ok = json_object_get(resp, "ok");
	const json_t *rid = json_object_get(resp, "id");
	if (!json_is_boolean(ok))
		return hsctl_malformed(c->command, "no \"ok\"");
	if (json_is_false(ok) && !rid)
		return daemon_error(c, resp);
	/* equal, or our integer read back as a double (see parse()) */
	if (!json_equal(rid, id) && !(json_is_real(rid) &&
				      json_real_value(rid) == (double)json_integer_value(id)))
		return hsctl_malformed(c->command, "not the id of the request");
	if (json_is_false(ok))
		return daemon_error(c, resp);
	json_t *r = json_object_get(resp, "result");
	if (!json_is_object(r))
		return hsctl_malformed(c->command, "no result object");
	*result = json_incref(r);
	return HSCTL_OK;
}

static int call(struct hsctl *h, const char *command, json_t *args, json_t **result,
		struct hsctl_stream *s)
{
	struct conn c = {.h = h, .command = command, .fd = -1};
	json_t *id = json_integer(h->next_id++), *resp = NULL;
	char *line = NULL;
	int rc = args && id ? request_line(command, args, id, &line) : hsctl_nomem();
	json_decref(args);
	if (!rc) {
		if (h->timeout_s > 0)
			c.deadline = now_ns() + (int64_t)(h->timeout_s * 1e9);
		rc = exchange(&c, line, &resp, s);
	}
	if (!rc)
		rc = unpack(&c, resp, id, result);
	if (rc && s && s->fd >= 0)	/* a refusal: nothing follows it */
		hsctl_stream_close(s);
	json_decref(resp);
	json_decref(id);
	free(line);
	return rc;
}

/* Sends command with args (a reference the call takes; NULL: memory ran
 * out building it) and, when the daemon answers ok, sets *result to a new
 * reference to its result object. Failures are reported on stderr. */
int hsctl_call(struct hsctl *h, const char *command, json_t *args, json_t **result)
{
	return call(h, command, args, result, NULL);
}

/* As hsctl_call, for a command whose answer a stream follows: on success
 * *s holds the open connection (non-blocking) and the bytes of the stream
 * read with the answer. The deadline (-t) ends with the answer. */
int hsctl_call_stream(struct hsctl *h, const char *command, json_t *args, json_t **result,
		      struct hsctl_stream *s)
{
	*s = (struct hsctl_stream){.fd = -1};
	return call(h, command, args, result, s);
}

void hsctl_stream_close(struct hsctl_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->buf);
	*s = (struct hsctl_stream){.fd = -1};
}
