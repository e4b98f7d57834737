/*
 * hsctl.h - what the files of hsctl share. hsctl is the command-line
 * client of hyperswitchd: it sends one JSON request per command over the
 * daemon's unix socket and prints the result (docs/control.md is the
 * contract). It needs jansson only, not the library.
 */
#ifndef HSCTL_H
#define HSCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define HSCTL_SOCKET_DEFAULT "/run/hyperswitch/hyperswitchd.sock"

/* Exit codes, and what the int functions below return (0: go on). */
enum {
	HSCTL_OK = 0,
	HSCTL_EDAEMON = 1,	/* the daemon answered with an error */
	HSCTL_EUSAGE = 2,	/* a bad command line: nothing was sent */
	HSCTL_ECONN = 3,	/* no usable answer (or hsctl itself failed) */
};

struct hsctl {
	const char *socket;
	double timeout_s;	/* connect + answer, per request; 0: none */
	bool json;
	long long next_id;
	/* As given on the command line, checked by hsctl_globals(). */
	const char *socket_arg, *timeout_arg;
};

/* An option of a command: "--port P" (value) or "--static" (flag). */
struct opt {
	const char *name;	/* "-i" or "--port" */
	const char *alias;	/* another spelling, or NULL */
	const char **value;	/* set for an option that takes a value */
	bool *flag;		/* set for one that does not */
};

/* hsctl.c */
int hsctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int hsctl_nomem(void);
int hsctl_malformed(const char *command, const char *what);
int hsctl_parse_args(struct hsctl *h, int argc, char **argv, const struct opt *opts,
		     bool stop_at_positional, int *npos);
int hsctl_words(struct hsctl *h, const char *cmd, int argc, char **argv,
		const struct opt *opts, int min, int max, int *npos);
int hsctl_print_json(const json_t *v);
typedef int hsctl_printer(struct hsctl *h, json_t *result);
int hsctl_request(struct hsctl *h, const char *command, json_t *args, hsctl_printer *print);

/* conn.c */
int hsctl_call(struct hsctl *h, const char *command, json_t *args, json_t **result);

/* A connection kept after the answer, for the records that follow it. */
struct hsctl_stream {
	int fd;			/* non-blocking; -1: none */
	char *buf;		/* what came after the answer line (malloc'ed) */
	size_t len;
};
int hsctl_call_stream(struct hsctl *h, const char *command, json_t *args, json_t **result,
		      struct hsctl_stream *s);
void hsctl_stream_close(struct hsctl_stream *s);

/* value.c */
extern const char *const hsctl_int_keys[];
extern const char *const hsctl_bool_keys[];
bool hsctl_utf8_valid(const char *s);
bool hsctl_parse_int(const char *s, long long *v);
bool hsctl_parse_seconds(const char *s, double *v);
int hsctl_set_string(json_t *obj, const char *key, const char *s);
int hsctl_set_int(json_t *obj, const char *key, const char *s, const char *what);
int hsctl_port_settings(json_t *port, char **kv, int n, const char *what);

/* show.c, stats.c, mirror.c, capture.c */
int hsctl_cmd_show(struct hsctl *h, int argc, char **argv);
int hsctl_cmd_vlan(struct hsctl *h, int argc, char **argv);
int hsctl_cmd_stats(struct hsctl *h, int argc, char **argv);
int hsctl_cmd_mirror_add(struct hsctl *h, int argc, char **argv);
int hsctl_cmd_mirror_set(struct hsctl *h, int argc, char **argv);
int hsctl_cmd_mirror_del(struct hsctl *h, int argc, char **argv);
int hsctl_cmd_mirror_show(struct hsctl *h, int argc, char **argv);
int hsctl_cmd_capture(struct hsctl *h, int argc, char **argv);
int hsctl_set_direction(json_t *args, bool rx, bool tx, const char *cmd);

/* dump.c: the pcap files of a capture. A failure is reported on stderr
 * and returns HSCTL_ECONN ("could not write its output"). */
struct dump;
int dump_open(struct dump **dp, const char *file, double rotate_s, int linktype,
	      int snaplen);
int dump_frame(struct dump *d, uint64_t ts_ns, uint32_t orig_len, const unsigned char *data,
	       uint32_t caplen);
int dump_flush(struct dump *d);
int dump_close(struct dump *d);

/* table.c: aligned columns; errors are sticky and reported by table_print. */
struct table;
struct table *table_new(const char *align, ...);
void table_add(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void table_json(struct table *t, const json_t *v);
void table_take(struct table *t, char *s);
int table_print(struct table *t);
const char *hsctl_text(const json_t *v, char *buf, size_t size);
char *hsctl_memprint(void (*fn)(FILE *f, const json_t *v), const json_t *v);

#endif
