/*
 * hsctl.c - the command-line client of hyperswitchd.
 *
 *   hsctl [-s SOCKET] [--json] [-t TIMEOUT_S] COMMAND [ARG]...
 *
 * Each command is one request on the daemon's control socket (see
 * docs/control.md; "stats -i" makes two; "capture" keeps the connection
 * for the frames that follow its answer). The options before the command
 * may also follow it. "hsctl help" lists the commands and exit codes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "hsctl.h"

#ifndef HSCTL_VERSION
#define HSCTL_VERSION "unknown"
#endif

static const char usage_text[] =
	"usage: hsctl [-s SOCKET] [--json] [-t TIMEOUT_S] COMMAND [ARG]...\n"
	"commands:\n"
	"  show [PORT]                        the switch and its ports\n"
	"  version                            versions of hsctl, the daemon, the library\n"
	"  port add NAME TYPE [KEY=VALUE]...  add a port (TYPE: vhost-user, tap, xen, vxlan\n"
	"                                      or uplink)\n"
	"  port del NAME                      delete a port\n"
	"  port set NAME KEY=VALUE...         change a port's settings (VLANs, limits in\n"
	"                                      place; other settings re-create it)\n"
	"  fdb show [--port P] [--vlan V]     the forwarding table\n"
	"  fdb add MAC PORT [--vlan V] [--replace]\n"
	"                                      add a static entry (in the port's VLAN\n"
	"                                      unless given; --replace moves one)\n"
	"  fdb del MAC [--vlan V]             delete an entry (its one VLAN unless given)\n"
	"  fdb flush [--port P] [--static]    remove learned entries (--static: static too)\n"
	"  stats [PORT] [-i SECONDS]          counters; -i: two samples, and rates\n"
	"  vlan                               each VLAN and its member ports\n"
	"  mirror add SRC DST [--rx|--tx]     send copies of SRC's frames to port DST\n"
	"  mirror set SRC DST [--rx|--tx]     change a mirror's direction (neither: both)\n"
	"  mirror del SRC DST                 stop a mirror\n"
	"  mirror show                        the mirrors, and the captures in progress\n"
	"  capture PORT -w FILE [-c COUNT] [-G SECONDS] [--rx|--tx] [-s SNAPLEN]\n"
	"                                     PORT's frames into pcap FILE (- is stdout)\n"
	"  log level [LEVEL]                  the log level: error, warn, info, debug\n"
	"  reload                             read the config file again, apply changes\n"
	"  help                               all options, settings and exit codes\n";

static const char help_text[] =
	"\n"
	"options (before or after the command):\n"
	"  -s, --socket PATH     the daemon's control socket (default $HSCTL_SOCKET,\n"
	"                        else " HSCTL_SOCKET_DEFAULT ")\n"
	"  -j, --json            print the daemon's result as JSON, not as tables\n"
	"  -t, --timeout SECS    the most a request may take, connecting included\n"
	"                        (default 10; 0: no limit)\n"
	"  -h, --help            this text\n"
	"\n"
	"port settings (KEY=VALUE; the keys of hyperswitchd.conf(5)):\n";

static const char exit_text[] =
	"  lists     trunks=10,100-199 (VLANs and ranges; empty: all),\n"
	"            remotes=192.0.2.1,192.0.2.2 (a vxlan port's flood list)\n"
	"  strings   any other key (vlan_mode, path, ifname, socket_mode, ...)\n"
	"\n"
	"capture PORT -w FILE (all its messages go to stderr):\n"
	"  -w, --write FILE      the pcap file; - is stdout, as in\n"
	"                        hsctl capture vm1 -w - | tcpdump -r -\n"
	"  -c, --count N         stop after N frames\n"
	"  -G, --rotate SECS     a new file every SECS seconds, by the frames' times;\n"
	"                        FILE is then a strftime(3) pattern and needs a %\n"
	"                        (e.g. vm1-%Y%m%d-%H%M%S.pcap)\n"
	"  -s, --snaplen BYTES   bytes kept of each frame (64..262144, default 262144);\n"
	"                        after \"capture\" -s is this: give the socket before it\n"
	"  --rx, --tx            only what PORT receives from its peer, or what is sent\n"
	"                        to it (default: both)\n"
	"  It ends on -c, SIGINT or SIGTERM (a second one kills), or when the port goes\n"
	"  away; the file is complete then. Last line: the frames captured and dropped.\n"
	"\n"
	"exit status:\n"
	"  0  success\n"
	"  1  the daemon answered with an error (shown as \"hsctl: CODE: message\"),\n"
	"     or a reload left out ports that failed\n"
	"  2  usage error: bad command or arguments; nothing was sent\n"
	"  3  no usable answer: cannot connect, the daemon closed the connection or\n"
	"     timed out, the answer was malformed (or hsctl ran out of memory or\n"
	"     could not write its output); for capture also a malformed record, or\n"
	"     the connection lost before the daemon's end record\n";

/* "  integers  vlan mtu ...", wrapped before 80 columns. */
static void print_keys(const char *label, const char *const *keys)
{
	int col = printf("  %-9s", label);
	for (; *keys; keys++) {
		if (col + 1 + (int)strlen(*keys) > 78)
			col = printf("\n%11s", "") - 1;
		col += printf(" %s", *keys);
	}
	printf("\n");
}

static void print_help(void)
{
	fputs(usage_text, stdout);
	fputs(help_text, stdout);
	print_keys("integers", hsctl_int_keys);
	print_keys("booleans", hsctl_bool_keys);
	printf("            (true/false, yes/no, on/off, 1/0)\n");
	fputs(exit_text, stdout);
}

/* The command whose words are being read ("port set"), for a usage
 * error to show its usage only. */
static const char *usage_cmd;

/* usage_text's lines for usage_cmd, with their continuation lines;
 * false if it has none. */
static bool print_cmd_usage(FILE *f)
{
	size_t n = usage_cmd ? strlen(usage_cmd) : 0;
	bool any = false, in = false;
	for (const char *l = usage_text; n && *l;) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) + 1 : strlen(l);
		if (!strncmp(l, "  ", 2) && l[2] != ' ')
			in = !strncmp(l + 2, usage_cmd, n) && (l[2 + n] == ' ' || l[2 + n] == '\n');
		if (in) {
			fprintf(f, "%s%.*s", any ? "" : "usage: hsctl [OPTIONS]\n", (int)len, l);
			any = true;
		}
		l += len;
	}
	return any;
}

int hsctl_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("hsctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\n", stderr);
	va_end(ap);
	if (print_cmd_usage(stderr))
		fputs("(hsctl help: every command and option)\n", stderr);
	else
		fputs(usage_text, stderr);
	return HSCTL_EUSAGE;
}

int hsctl_nomem(void)
{
	fputs("hsctl: out of memory\n", stderr);
	return HSCTL_ECONN;
}

int hsctl_malformed(const char *command, const char *what)
{
	fprintf(stderr, "hsctl: malformed answer to %s: %s\n", command, what);
	return HSCTL_ECONN;
}

int hsctl_print_json(const json_t *v)
{
	if (json_dumpf(v, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) < 0)
		return hsctl_nomem();
	putchar('\n');
	return HSCTL_OK;
}

/* Sends the request and prints its result: as JSON with --json, else with
 * print (NULL: nothing to say on success). */
int hsctl_request(struct hsctl *h, const char *command, json_t *args, hsctl_printer *print)
{
	json_t *res;
	int rc = hsctl_call(h, command, args, &res);
	if (rc)
		return rc;
	rc = h->json ? hsctl_print_json(res) : print ? print(h, res) : HSCTL_OK;
	json_decref(res);
	return rc;
}

/* ---- the command line ------------------------------------------------ */

static bool opt_is(const struct opt *o, const char *arg, const char **inline_val)
{
	const char *names[] = {o->name, o->alias};
	for (int i = 0; i < 2; i++) {
		size_t n = names[i] ? strlen(names[i]) : 0;
		if (!n || strncmp(arg, names[i], n))
			continue;
		if (!arg[n]) {
			*inline_val = NULL;
			return true;
		}
		/* "--port=P", and "-i1" for a short option with a value */
		if (o->value && (arg[n] == '=' ? names[i][1] == '-' : names[i][1] != '-')) {
			*inline_val = arg + n + (arg[n] == '=');
			return true;
		}
	}
	return false;
}

/* Takes the option at argv[*i] (and its value); false when none matches. */
static bool take_opt(const struct opt *opts, int argc, char **argv, int *i, int *rc)
{
	const char *val;
	for (const struct opt *o = opts; o && o->name; o++) {
		if (!opt_is(o, argv[*i], &val))
			continue;
		*rc = HSCTL_OK;
		if (o->flag) {
			*o->flag = true;
			return true;
		}
		if (!val && *i + 1 >= argc)
			*rc = hsctl_usage_error("%s: a value is missing", o->name);
		else
			*o->value = val ? val : argv[++*i];
		return true;
	}
	return false;
}

/* The options the command has, then the global ones, anywhere among the
 * words; the other words (and all after "--") are moved to the front of
 * argv, their number in *npos. stop_at_positional: the first such word
 * and all after it are positional (the command and its words, for main). */
int hsctl_parse_args(struct hsctl *h, int argc, char **argv, const struct opt *opts,
		     bool stop_at_positional, int *npos)
{
	bool help = false;
	const struct opt globals[] = {
		{"-s", "--socket", &h->socket_arg, NULL},
		{"-t", "--timeout", &h->timeout_arg, NULL},
		{"-j", "--json", NULL, &h->json},
		{"-h", "--help", NULL, &help},
		{NULL, NULL, NULL, NULL},
	};
	int n = 0, i, rc = HSCTL_OK;
	for (i = 0; i < argc && !rc; i++) {
		char *a = argv[i];
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (a[0] != '-' || !a[1]) {
			argv[n++] = a;
			if (stop_at_positional)
				break;
			continue;
		}
		if (!take_opt(opts, argc, argv, &i, &rc) && !take_opt(globals, argc, argv, &i, &rc))
			rc = hsctl_usage_error("unknown option %s", a);
	}
	for (i += stop_at_positional && n; i < argc && !rc; i++)
		argv[n++] = argv[i];
	if (help && !rc) {
		/* Nothing is allocated yet when a command parses its words. */
		print_help();
		exit(fflush(stdout) ? HSCTL_ECONN : HSCTL_OK);
	}
	*npos = n;
	return rc;
}

/* The socket and the timeout, once all the words are read. */
static int hsctl_globals(struct hsctl *h)
{
	usage_cmd = NULL; /* an error here is the options', not the command's */
	const char *env = getenv("HSCTL_SOCKET");
	h->socket = h->socket_arg ? h->socket_arg : env && *env ? env : HSCTL_SOCKET_DEFAULT;
	if (!*h->socket || strlen(h->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return hsctl_usage_error("not a unix socket path: \"%s\"", h->socket);
	if (h->timeout_arg && !hsctl_parse_seconds(h->timeout_arg, &h->timeout_s))
		return hsctl_usage_error("-t: not a number of seconds: %s", h->timeout_arg);
	return HSCTL_OK;
}

/* Parses a command's words: opts, then between min and max positional
 * ones (max < 0: any number). */
int hsctl_words(struct hsctl *h, const char *cmd, int argc, char **argv,
		const struct opt *opts, int min, int max, int *npos)
{
	usage_cmd = cmd;
	int rc = hsctl_parse_args(h, argc, argv, opts, false, npos);
	if (rc)
		return rc;
	if (*npos < min)
		return hsctl_usage_error("%s: an argument is missing", cmd);
	if (max >= 0 && *npos > max)
		return hsctl_usage_error("%s: too many arguments (%s)", cmd, argv[max]);
	return hsctl_globals(h);
}

/* ---- commands ----------------------------------------------------------- */

static int print_version(struct hsctl *h, json_t *r)
{
	(void)h;
	char b1[32], b2[32];
	const json_t *proto = json_object_get(r, "protocol");
	printf("hsctl %s (protocol 1)\n", HSCTL_VERSION);
	printf("daemon %s\n", hsctl_text(json_object_get(r, "daemon"), b1, sizeof(b1)));
	printf("library %s\n", hsctl_text(json_object_get(r, "library"), b1, sizeof(b1)));
	printf("protocol %s..%s\n", hsctl_text(json_array_get(proto, 0), b1, sizeof(b1)),
	       hsctl_text(json_array_get(proto, 1), b2, sizeof(b2)));
	return HSCTL_OK;
}

static int cmd_version(struct hsctl *h, int argc, char **argv)
{
	int n, rc = hsctl_words(h, "version", argc, argv, NULL, 0, 0, &n);
	return rc ? rc : hsctl_request(h, "version", json_object(), print_version);
}

/* Sends args when rc (from building them) is 0; frees them when not. */
static int send_built(struct hsctl *h, int rc, const char *command, json_t *args,
		      hsctl_printer *print)
{
	if (rc) {
		json_decref(args);
		return rc;
	}
	return hsctl_request(h, command, args, print);
}

static int cmd_port_add(struct hsctl *h, int argc, char **argv)
{
	int n, rc = hsctl_words(h, "port add", argc, argv, NULL, 2, -1, &n);
	if (rc)
		return rc;
	json_t *args = json_object(), *port = json_object();
	if (json_object_set_new(args, "port", port))
		rc = hsctl_nomem();
	if (!rc)
		rc = hsctl_set_string(port, "name", argv[0]);
	if (!rc)
		rc = hsctl_set_string(port, "type", argv[1]);
	if (!rc)
		rc = hsctl_port_settings(port, argv + 2, n - 2, "port add");
	return send_built(h, rc, "port.add", args, NULL);
}

static int cmd_port_del(struct hsctl *h, int argc, char **argv)
{
	int n, rc = hsctl_words(h, "port del", argc, argv, NULL, 1, 1, &n);
	if (rc)
		return rc;
	json_t *args = json_object();
	rc = hsctl_set_string(args, "name", argv[0]);
	return send_built(h, rc, "port.del", args, NULL);
}

static void print_list(const char *label, const json_t *list)
{
	size_t i;
	const json_t *v;
	char buf[32];
	printf("%s", label);
	json_array_foreach(list, i, v)
		printf("%s%s", i ? ", " : " ", hsctl_text(v, buf, sizeof(buf)));
	printf("\n");
}

static int print_port_set(struct hsctl *h, json_t *r)
{
	(void)h;
	const json_t *changed = json_object_get(r, "changed");
	char buf[32];
	char label[64];
	const char *port = hsctl_text(json_object_get(r, "port"), buf, sizeof(buf));
	if (!json_array_size(changed)) {
		printf("%s: nothing changed\n", port);
	} else {
		snprintf(label, sizeof(label), "%s: changed%s", port,
			 json_is_true(json_object_get(r, "in_place")) ? " in place"
								       : " (port made again)");
		print_list(label, changed);
	}
	return HSCTL_OK;
}

static int cmd_port_set(struct hsctl *h, int argc, char **argv)
{
	int n, rc = hsctl_words(h, "port set", argc, argv, NULL, 2, -1, &n);
	if (rc)
		return rc;
	json_t *args = json_object();
	rc = hsctl_set_string(args, "name", argv[0]);
	if (!rc)
		rc = hsctl_port_settings(args, argv + 1, n - 1, "port set");
	return send_built(h, rc, "port.set", args, print_port_set);
}

static int print_fdb(struct hsctl *h, json_t *r)
{
	(void)h;
	const json_t *entries = json_object_get(r, "entries"), *e;
	size_t i;
	if (!json_is_array(entries))
		return hsctl_malformed("fdb.show", "no entries list");
	struct table *t = table_new("lrlll", "MAC", "VLAN", "PORT", "TYPE", "AGE");
	json_array_foreach(entries, i, e) {
		bool is_static = json_is_true(json_object_get(e, "static"));
		table_json(t, json_object_get(e, "mac"));
		table_json(t, json_object_get(e, "vlan"));
		table_json(t, json_object_get(e, "port"));
		table_add(t, "%s", is_static ? "static" : "learned");
		if (is_static)	/* static entries do not age */
			table_add(t, "-");
		else
			table_json(t, json_object_get(e, "idle_s"));
	}
	return table_print(t);
}

static int cmd_fdb_show(struct hsctl *h, int argc, char **argv)
{
	const char *port = NULL, *vlan = NULL;
	const struct opt opts[] = {
		{"--port", NULL, &port, NULL}, {"--vlan", NULL, &vlan, NULL}, {NULL, NULL, NULL, NULL},
	};
	int n, rc = hsctl_words(h, "fdb show", argc, argv, opts, 0, 0, &n);
	if (rc)
		return rc;
	json_t *args = json_object();
	if (port)
		rc = hsctl_set_string(args, "port", port);
	if (vlan && !rc)
		rc = hsctl_set_int(args, "vlan", vlan, "--vlan");
	return send_built(h, rc, "fdb.show", args, print_fdb);
}

/* fdb add MAC PORT [--vlan V] [--replace], fdb del MAC [--vlan V] */
static int fdb_entry(struct hsctl *h, int argc, char **argv, bool add)
{
	const char *vlan = NULL;
	bool replace = false;
	/* (fdb del's list ends before --replace) */
	const struct opt opts[] = {{"--vlan", NULL, &vlan, NULL},
				   {add ? "--replace" : NULL, NULL, NULL, &replace},
				   {NULL, NULL, NULL, NULL}};
	const char *cmd = add ? "fdb add" : "fdb del";
	int n, rc = hsctl_words(h, cmd, argc, argv, opts, add ? 2 : 1, add ? 2 : 1, &n);
	if (rc)
		return rc;
	json_t *args = json_object();
	rc = hsctl_set_string(args, "mac", argv[0]);
	if (add && !rc)
		rc = hsctl_set_string(args, "port", argv[1]);
	if (vlan && !rc)
		rc = hsctl_set_int(args, "vlan", vlan, "--vlan");
	if (replace && !rc && json_object_set_new(args, "replace", json_true()))
		rc = hsctl_nomem();
	return send_built(h, rc, add ? "fdb.add" : "fdb.del", args, NULL);
}

static int cmd_fdb_add(struct hsctl *h, int argc, char **argv)
{
	return fdb_entry(h, argc, argv, true);
}

static int cmd_fdb_del(struct hsctl *h, int argc, char **argv)
{
	return fdb_entry(h, argc, argv, false);
}

static int print_flush(struct hsctl *h, json_t *r)
{
	(void)h;
	char buf[32];
	printf("removed %s\n", hsctl_text(json_object_get(r, "removed"), buf, sizeof(buf)));
	return HSCTL_OK;
}

static int cmd_fdb_flush(struct hsctl *h, int argc, char **argv)
{
	const char *port = NULL;
	bool all = false;
	const struct opt opts[] = {
		{"--port", NULL, &port, NULL}, {"--static", NULL, NULL, &all}, {NULL, NULL, NULL, NULL},
	};
	int n, rc = hsctl_words(h, "fdb flush", argc, argv, opts, 0, 0, &n);
	if (rc)
		return rc;
	json_t *args = json_object();
	if (port)
		rc = hsctl_set_string(args, "port", port);
	if (all && !rc && json_object_set_new(args, "static", json_true()))
		rc = hsctl_nomem();
	return send_built(h, rc, "fdb.flush", args, print_flush);
}

static int print_level(struct hsctl *h, json_t *r)
{
	(void)h;
	char buf[32];
	printf("%s\n", hsctl_text(json_object_get(r, "level"), buf, sizeof(buf)));
	return HSCTL_OK;
}

static int cmd_log_level(struct hsctl *h, int argc, char **argv)
{
	int n, rc = hsctl_words(h, "log level", argc, argv, NULL, 0, 1, &n);
	if (rc)
		return rc;
	json_t *args = json_object();
	if (n)	/* the daemon knows the levels and names them when it refuses */
		rc = hsctl_set_string(args, "level", argv[0]);
	return send_built(h, rc, "log.level", args, print_level);
}

/* Ports the library refused; a reload with any is a failure (exit 1). */
static int reload_failed(const json_t *failed)
{
	size_t i;
	const json_t *f;
	char b1[32], b2[32];
	json_array_foreach(failed, i, f)
		fprintf(stderr, "hsctl: reload: port %s failed: %s\n",
			hsctl_text(json_object_get(f, "port"), b1, sizeof(b1)),
			hsctl_text(json_object_get(f, "error"), b2, sizeof(b2)));
	return json_array_size(failed) ? HSCTL_EDAEMON : HSCTL_OK;
}

static void print_reload(const json_t *r)
{
	static const char *const lists[] = {"added", "removed", "changed", "in_place",
					    "restart_needed"};
	char buf[32];
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		const json_t *l = json_object_get(r, lists[i]);
		if (json_array_size(l)) {
			char label[32];
			snprintf(label, sizeof(label), "%s:", lists[i]);
			print_list(label, l);
		}
	}
	printf("unchanged: %s\n", hsctl_text(json_object_get(r, "unchanged"), buf, sizeof(buf)));
}

static int cmd_reload(struct hsctl *h, int argc, char **argv)
{
	json_t *r;
	int n, rc = hsctl_words(h, "reload", argc, argv, NULL, 0, 0, &n);
	if (!rc)
		rc = hsctl_call(h, "reload", json_object(), &r);
	if (rc)
		return rc;
	if (h->json)
		rc = hsctl_print_json(r);
	else
		print_reload(r);
	if (!rc)
		rc = reload_failed(json_object_get(r, "failed"));
	json_decref(r);
	return rc;
}

static int cmd_help(struct hsctl *h, int argc, char **argv)
{
	(void)h;
	(void)argv;
	if (argc)
		return hsctl_usage_error("help: too many arguments");
	print_help();
	return HSCTL_OK;
}

static const struct command {
	const char *name, *sub;
	int (*run)(struct hsctl *h, int argc, char **argv);
} commands[] = {
	{"show", NULL, hsctl_cmd_show},
	{"version", NULL, cmd_version},
	{"port", "add", cmd_port_add},
	{"port", "del", cmd_port_del},
	{"port", "set", cmd_port_set},
	{"fdb", "show", cmd_fdb_show},
	{"fdb", "add", cmd_fdb_add},
	{"fdb", "del", cmd_fdb_del},
	{"fdb", "flush", cmd_fdb_flush},
	{"stats", NULL, hsctl_cmd_stats},
	{"vlan", NULL, hsctl_cmd_vlan},
	{"mirror", "add", hsctl_cmd_mirror_add},
	{"mirror", "set", hsctl_cmd_mirror_set},
	{"mirror", "del", hsctl_cmd_mirror_del},
	{"mirror", "show", hsctl_cmd_mirror_show},
	{"capture", NULL, hsctl_cmd_capture},
	{"log", "level", cmd_log_level},
	{"reload", NULL, cmd_reload},
	{"help", NULL, cmd_help},
};

/* argv[0] is the command; its subcommand, if it has them, argv[1]. */
static int dispatch(struct hsctl *h, int argc, char **argv)
{
	bool known = false;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];
		if (strcmp(c->name, argv[0]))
			continue;
		if (!c->sub)
			return c->run(h, argc - 1, argv + 1);
		known = true;
		if (argc > 1 && !strcmp(c->sub, argv[1]))
			return c->run(h, argc - 2, argv + 2);
	}
	if (!known)
		return hsctl_usage_error("unknown command \"%s\"", argv[0]);
	usage_cmd = argv[0]; /* its subcommands' lines */
	if (argc < 2)
		return hsctl_usage_error("%s: a subcommand is missing", argv[0]);
	return hsctl_usage_error("%s: unknown subcommand \"%s\"", argv[0], argv[1]);
}

int main(int argc, char **argv)
{
	struct hsctl h = {.timeout_s = 10, .next_id = 1};
	int n, rc = hsctl_parse_args(&h, argc - 1, argv + 1, NULL, true, &n);
	if (!rc && !n)
		rc = hsctl_usage_error("no command");
	if (!rc)
		rc = dispatch(&h, n, argv + 1);
	/* Output that did not get out is a failure too (a full disk, say). */
	if (fflush(stdout) || ferror(stdout)) {
		perror("hsctl: stdout");
		if (!rc)
			rc = HSCTL_ECONN;
	}
	return rc;
}
