/*
 * fuzz_ctl.c - hyperswitchd's control socket on hostile input: the bytes
 * of one connection, sent to a real daemon core (its config, switch,
 * ports, control socket, events and mirrors, on its loop; in a network
 * namespace of the fuzzing process's own) through the socket itself, the
 * write side shut at the end, as `socat` or `nc -N` do. A group the
 * socket is opened to (control.mode "0660") is less trusted than the
 * daemon's user: what it sends must not crash, leak, wedge or corrupt it.
 *
 * Requests that make, change or reload ports (port.add, port.set,
 * reload) are left out of each input, as the daemon parses them: they
 * take file system paths and device names from the request (a vhost-user
 * socket anywhere), and their port objects are fuzz_conf's. Everything
 * else runs: show, stats, fdb.*, mirror.*, capture, log.level, version,
 * port.del (ports deleted are made again before the next input).
 *
 * Oracles, besides the sanitizers: every answer before a capture's
 * stream is one JSON object with "ok" (and, when false, an error with a
 * code and a message); no more answers than request lines (and one for
 * the end of the stream); the connection ends once the input is
 * answered; and then a new connection is answered ("version").
 */
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../tools/hyperswitchd/hsd.h"
#include "th_netns.h"

static struct hsd d;
static uv_loop_t loop;
static struct hsd_conf conf;
static char dir[64];
static bool ready;

static void check(bool ok, const char *what, const char *detail)
{
	if (!ok) {
		fprintf(stderr, "fuzz_ctl: %s%s%s\n", what, detail ? ": " : "",
			detail ? detail : "");
		abort();
	}
}

/* main.c's, which is not linked here. */
void hsd_notify(const char *state)
{
	(void)state;
}

/* The temporary directory's files (the sockets go with their ports and
 * the control socket; what is left is removed here). */
static void cleanup(void)
{
	char path[128];
	static const char *const names[] = {"hyperswitchd.conf", "ctl.sock", "a.sock"};
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

static bool setup(void)
{
	if (th_netns_own()) {
		fprintf(stderr, "fuzz_ctl: needs root (a network namespace): every input "
			"is skipped\n");
		return false;
	}
	/* the kernel's own IPv6 traffic on the taps (router solicitations,
	 * MLD) would teach the table between inputs */
	for (const char *const *k = (const char *const[]){"all", "default", NULL}; *k; k++) {
		char path[96];
		snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", *k);
		FILE *sf = fopen(path, "w");
		if (sf) {
			fputs("1", sf);
			fclose(sf);
		}
	}
	/* as the daemon (main.c): a client gone while answers are written
	 * is an EPIPE, not the end of the process */
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/hs-fuzz-ctl.XXXXXX");
	check(mkdtemp(dir) != NULL, "mkdtemp", strerror(errno));
	char file[128];
	snprintf(file, sizeof(file), "%s/hyperswitchd.conf", dir);
	FILE *f = fopen(file, "w");
	check(f != NULL, "config file", strerror(errno));
	fprintf(f,
		"switch = { name = \"fz\"; fdb = { capacity = 256; aging_s = 300; }; };\n"
		"control = { socket = \"%s/ctl.sock\"; };\n"
		"log = { level = \"error\"; };\n"
		"ports = (\n"
		"  { name = \"a\"; type = \"vhost-user\"; path = \"%s/a.sock\"; vlan = 10; },\n"
		"  { name = \"b\"; type = \"tap\"; ifname = \"fzc-b\"; vlan_mode = \"trunk\";\n"
		"    vlan = 1; trunks = (10, \"20-30\"); },\n"
		"  { name = \"c\"; type = \"tap\"; ifname = \"fzc-c\"; vlan = 20; mac_limit = 8; }\n"
		");\n",
		dir, dir);
	fclose(f);
	char err[512];
	check(!hsd_conf_load(file, &conf, err, sizeof(err)), "config", err);
	d.conf = conf;
	d.config_file = d.conf.file;
	hsd_log_init(HS_LOG_ERROR, false);
	uv_loop_init(&loop);
	d.loop = &loop;
	d.start_ns = hsd_now_ns();
	check(!hsd_switch_start(&d), "switch", NULL);
	check(!hsd_events_start(&d), "events", NULL);
	check(!hsd_ctl_start(&d, err, sizeof(err)), "control socket", err);
	atexit(cleanup);
	return true;
}

/* Each input starts from the same state, so that a crash reproduces from
 * its input alone: the ports of the config that a port.del took away made
 * again, no mirror, an empty table, the log level the config's. */
static void reset(void)
{
	char err[512];
	for (unsigned i = 0; i < conf.n_ports; i++)
		if (!hsd_port_get(&d, conf.ports[i].name))
			check(!hsd_port_add(&d, &conf.ports[i], err, sizeof(err)), "port back", err);
	hsd_mirrors_del_all(&d);
	hs_fdb_flush(d.sw, NULL, HS_FDB_FLUSH_STATIC);
	hsd_log_set_level(HS_LOG_ERROR);
	hs_switch_set_log_level(d.sw, HS_LOG_ERROR);
}

/* Whether the daemon would run this line as port.add, port.set or reload
 * (it parses the line the same way). */
static bool left_out(const char *line, size_t len)
{
	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	bool out = false;
	if (json_is_object(req)) {
		const char *cmd = json_string_value(json_object_get(req, "command"));
		out = cmd && (!strcmp(cmd, "port.add") || !strcmp(cmd, "port.set") ||
			      !strcmp(cmd, "reload"));
	}
	json_decref(req);
	return out;
}

struct io {
	int fd;
	const uint8_t *out;
	size_t out_len, sent;
	bool shut;
	char *in;
	size_t in_len, in_cap;
	size_t parsed; /* answer lines before this looked at (capture_started) */
	bool eof;
};

/* Whether a complete answer line read so far starts a capture (its
 * result has "linktype"); lines are looked at once each. */
static bool capture_started(struct io *io)
{
	while (io->parsed < io->in_len) {
		char *nl = memchr(io->in + io->parsed, '\n', io->in_len - io->parsed);
		if (!nl)
			return false;
		json_t *r = json_loadb(io->in + io->parsed, (size_t)(nl - (io->in + io->parsed)), 0,
				       NULL);
		bool cap = json_is_true(json_object_get(r, "ok")) &&
			   json_object_get(json_object_get(r, "result"), "linktype");
		json_decref(r);
		io->parsed = (size_t)(nl - io->in) + 1;
		if (cap)
			return true;
	}
	return false;
}

/* Sends what is left, reads what comes, runs the daemon's loop, until
 * the daemon ends the connection (or starts a capture's stream). */
static void pump(struct io *io)
{
	uint64_t deadline = hsd_now_ns() + 8000000000ull;
	while (!io->eof) {
		check(hsd_now_ns() < deadline, "the connection did not end within 8 s", NULL);
		if (io->sent < io->out_len) {
			ssize_t k = send(io->fd, io->out + io->sent, io->out_len - io->sent,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (k > 0)
				io->sent += (size_t)k;
			else if (k < 0 && errno != EAGAIN)
				io->sent = io->out_len; /* closed on us: the rest is moot */
		}
		if (io->sent == io->out_len && !io->shut) {
			shutdown(io->fd, SHUT_WR);
			io->shut = true;
		}
		for (;;) {
			if (io->in_cap - io->in_len < 65536) {
				io->in_cap = io->in_cap * 2 + 65536;
				io->in = realloc(io->in, io->in_cap);
				check(io->in != NULL, "out of memory", NULL);
			}
			ssize_t k = recv(io->fd, io->in + io->in_len, io->in_cap - io->in_len - 1,
					 MSG_DONTWAIT);
			if (k > 0) {
				io->in_len += (size_t)k;
				continue;
			}
			if (k == 0 || (k < 0 && errno != EAGAIN))
				io->eof = true;
			break;
		}
		if (io->eof)
			break;
		/* a capture's answer came: its stream goes on until the
		 * client closes (also after the client's end of requests) */
		if (capture_started(io))
			break;
		struct pollfd p[2] = {
			{.fd = io->fd, .events = POLLIN | (io->sent < io->out_len ? POLLOUT : 0)},
			{.fd = uv_backend_fd(&loop), .events = POLLIN},
		};
		int t = uv_backend_timeout(&loop);
		poll(p, 2, t < 0 || t > 50 ? 50 : t);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	if (!io->in) {
		io->in = malloc(1);
		check(io->in != NULL, "out of memory", NULL);
	}
	io->in[io->in_len] = 0;
}

static int connect_ctl(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	check(fd >= 0, "socket", strerror(errno));
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", conf.socket);
	check(!connect(fd, (struct sockaddr *)&a, sizeof(a)), "connect", strerror(errno));
	return fd;
}

/* Every answer line up to a capture's stream: a JSON object with "ok". */
static unsigned check_answers(const char *in, size_t len)
{
	unsigned n = 0;
	const char *p = in, *end = in + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		check(nl != NULL, "an answer not ended by a newline", p);
		json_error_t jerr;
		json_t *r = json_loadb(p, (size_t)(nl - p), 0, &jerr);
		check(json_is_object(r), "an answer that is not a JSON object", jerr.text);
		json_t *ok = json_object_get(r, "ok");
		check(json_is_boolean(ok), "an answer without \"ok\"", NULL);
		n++;
		if (json_is_false(ok)) {
			json_t *e = json_object_get(r, "error");
			check(json_is_string(json_object_get(e, "code")) &&
				      json_is_string(json_object_get(e, "message")),
			      "an error without a code and a message", NULL);
		} else {
			json_t *res = json_object_get(r, "result");
			check(json_is_object(res) || json_is_array(res), "ok without a result",
			      NULL);
			if (json_object_get(res, "linktype")) { /* a capture: pcap follows */
				json_decref(r);
				break;
			}
		}
		json_decref(r);
		p = nl + 1;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool tried;
	if (!tried) {
		tried = true;
		ready = setup();
	}
	if (!ready)
		return 0;
	reset();

	/* the input, less the lines left out */
	uint8_t *out = malloc(size ? size : 1);
	check(out != NULL, "out of memory", NULL);
	size_t n = 0;
	unsigned lines = 0;
	for (size_t at = 0; at < size;) {
		const uint8_t *nl = memchr(data + at, '\n', size - at);
		size_t len = nl ? (size_t)(nl - (data + at)) + 1 : size - at;
		if (!nl || !left_out((const char *)data + at, len - 1)) {
			memcpy(out + n, data + at, len);
			n += len;
			lines += nl != NULL;
		}
		at += len;
	}
	struct io io = {.fd = connect_ctl(), .out = out, .out_len = n};
	pump(&io);
	close(io.fd);
	unsigned answers = check_answers(io.in, io.in_len);
	/* (one more: a refusal of the line the end of the stream cut short,
	 * or of a line too long) */
	check(answers <= lines + 1, "more answers than requests", NULL);
	free(io.in);
	free(out);

	/* the daemon answers the next connection */
	static const char ver[] = "{\"command\":\"version\"}\n";
	struct io v = {.fd = connect_ctl(), .out = (const uint8_t *)ver,
		       .out_len = sizeof(ver) - 1};
	pump(&v);
	close(v.fd);
	check(v.in_len > 0 && strstr(v.in, "\"ok\":true") != NULL,
	      "the next connection was not answered", v.in);
	free(v.in);
	/* both connections are gone from the daemon's side too */
	struct hsd_ctl_stats st;
	for (int i = 0; i < 1000; i++) {
		hsd_ctl_stats(&d, &st);
		if (!st.connections)
			break;
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	check(st.connections == 0, "a connection the daemon kept after its end", NULL);
	return 0;
}
