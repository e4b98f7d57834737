/*
 * hyperswitchd - runs one hyperswitch from a config file (docs/hyperswitchd.md),
 * with a control socket for hsctl (docs/control.md). It uses only the
 * library's public API: the switch's control plane is attached to the
 * daemon's own libuv loop, which also serves the control socket and the
 * signals, so every change to the switch is made from that one thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#define notify(s) sd_notify(0, s)
#else
#define notify(s) ((void)0)
#endif

#include "hsd.h"

struct opts {
	const char *config, *pidfile, *socket;
	bool check, daemon, syslog;
	int level; /* -1: from the file */
};

static void usage(FILE *f, const char *argv0)
{
	fprintf(f,
		"usage: %s [-c FILE] [--check] [-d|--daemon] [-p|--pidfile FILE] [--syslog]\n"
		"       [-l|--log-level error|warn|info|debug] [-s|--socket PATH] [-V|--version]\n"
		"Runs a hyperswitch from FILE (default %s).\n"
		"SIGTERM/SIGINT stop it, SIGHUP reloads FILE. See docs/hyperswitchd.md.\n",
		argv0, HSD_DEFAULT_CONFIG);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"config", required_argument, 0, 'c'}, {"check", no_argument, 0, 'C'},
		{"daemon", no_argument, 0, 'd'},       {"pidfile", required_argument, 0, 'p'},
		{"syslog", no_argument, 0, 'S'},       {"log-level", required_argument, 0, 'l'},
		{"socket", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},      {0, 0, 0, 0}};
	*o = (struct opts){.config = HSD_DEFAULT_CONFIG, .level = -1};
	int ch;
	while ((ch = getopt_long(argc, argv, "c:dp:l:s:hV", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'C': o->check = true; break;
		case 'd': o->daemon = true; break;
		case 'p': o->pidfile = optarg; break;
		case 'S': o->syslog = true; break;
		case 's': o->socket = optarg; break;
		case 'l': {
			enum hs_log_level l;
			if (hsd_level_parse(optarg, &l)) {
				fprintf(stderr, "%s: bad log level %s\n", argv[0], optarg);
				return 2;
			}
			o->level = (int)l;
			break;
		}
		case 'h': usage(stdout, argv[0]); exit(0);
		case 'V':
			/* the library this binary runs with may be newer than
			 * the one it was built with: both */
			printf("hyperswitchd %s (library %s)\n", HS_VERSION_STRING,
			       hs_version_string());
			exit(0);
		default: usage(stderr, argv[0]); return 2; /* getopt said why */
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument \"%s\" (the config file goes after "
			"-c)\n", argv[0], argv[optind]);
		usage(stderr, argv[0]);
		return 2;
	}
	return 0;
}

static void print_check(const struct hsd_conf *c)
{
	printf("%s: valid; switch %s, %u worker(s), control socket %s, %u port(s)\n", c->file,
	       c->name, c->workers, c->socket, c->n_ports);
	for (unsigned i = 0; i < c->n_ports; i++) {
		json_t *j = hsd_port_conf_json(&c->ports[i]);
		char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		printf("  %s\n", s ? s : c->ports[i].name);
		free(s);
		json_decref(j);
	}
}

/* ---- pid file: locked for the daemon's life ------------------------------ */

static int pidfile_fd = -1;

static int pidfile_take(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		hsd_log(HS_LOG_ERROR, "pid file %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		char buf[32] = "";
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = 0;
		buf[strcspn(buf, "\n")] = 0;
		hsd_log(HS_LOG_ERROR, "pid file %s: hyperswitchd %s runs already", path,
			buf[0] ? buf : "(pid unknown)");
		close(fd);
		return -1;
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) || pwrite(fd, pid, (size_t)n, 0) != n) {
		hsd_log(HS_LOG_ERROR, "pid file %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	pidfile_fd = fd;
	return 0;
}

/* ---- daemon mode: the parent waits until the child is ready ---------------- */

static int ready_fd = -1;

static void daemonize(void)
{
	int p[2];
	if (pipe(p)) {
		perror("pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		char st = 1;
		if (read(p[0], &st, 1) != 1)
			st = 1; /* the child died before it was ready */
		_exit(st);
	}
	close(p[0]);
	ready_fd = p[1];
	setsid();
	if (chdir("/")) {
		/* nothing depends on the cwd; keep going */
	}
}

static void ready(int status)
{
	if (ready_fd < 0)
		return;
	char st = (char)status;
	/* the terminal hears no more once the parent may have gone */
	hsd_log_stderr_too(false);
	if (write(ready_fd, &st, 1) != 1) {
		/* the parent is gone; nothing to tell */
	}
	close(ready_fd);
	ready_fd = -1;
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
}

void hsd_notify(const char *state)
{
	notify(state);
#ifndef HAVE_SYSTEMD
	(void)state;
#endif
}

/* ---- signals ------------------------------------------------------------- */

static void on_signal(uv_signal_t *h, int sig)
{
	struct hsd *d = h->data;
	if (sig == SIGHUP) {
		json_t *res = NULL;
		char err[512];
		hsd_log(HS_LOG_INFO, "SIGHUP: reloading %s", d->config_file);
		hsd_reload(d, &res, err, sizeof(err));
		json_decref(res);
		return;
	}
	hsd_log(HS_LOG_INFO, "%s: stopping", strsignal(sig));
	d->stopping = true;
	uv_stop(d->loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Every port holds files: a tap queue its device, a vhost-user port its
 * socket, memory regions and a kick and call eventfd per ring (and each
 * thread moving tap frames one io_uring). The soft limit (1024 under systemd) would cap a switch at a
 * few hundred ports. The soft limit stays low for programs that use
 * select() (FD_SETSIZE 1024); the daemon and its libraries poll with epoll
 * only (libuv; libmicrohttpd with MHD_USE_EPOLL), so it takes the hard
 * limit (systemd's default: 524288). */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max)
		return;
	rlim_t was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		hsd_log(HS_LOG_WARN, "cannot raise the open-files limit from %llu: %s",
			(unsigned long long)was, strerror(errno));
	else
		hsd_log(HS_LOG_DEBUG, "open-files limit raised from %llu to %llu",
			(unsigned long long)was, (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
	struct opts o;
	int rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc;
	static struct hsd d;
	char err[512];
	/* the file's ports are added below and then kept in d.ports */
	struct hsd_conf file;
	if (hsd_conf_load(o.config, &file, err, sizeof(err))) {
		fprintf(stderr, "hyperswitchd: %s\n", err);
		return 1;
	}
	if (o.socket) {
		free(file.socket);
		file.socket = strdup(o.socket);
	}
	if (o.check) {
		print_check(&file);
		hsd_conf_free(&file);
		return 0;
	}
	d.conf = file;
	d.config_file = d.conf.file;
	d.level_from_cmdline = o.level >= 0;
	d.socket_from_cmdline = o.socket != NULL;
	hsd_log_init(o.level >= 0 ? (enum hs_log_level)o.level : file.log_level,
		     o.syslog || o.daemon || file.syslog);
	hsd_log_stderr_too(o.daemon); /* until it is ready and detaches */
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if (o.daemon)
		daemonize();
	if (o.pidfile && pidfile_take(o.pidfile)) {
		ready(1);
		return 1;
	}
	uv_loop_t loop;
	uv_loop_init(&loop);
	d.loop = &loop;
	d.start_ns = hsd_now_ns();
	rc = hsd_switch_start(&d);
	if (!rc && (rc = hsd_events_start(&d)))
		hsd_log(HS_LOG_ERROR, "events: %s", hs_strerror(rc));
	/* the control socket before the ports: a second daemon started by
	 * mistake stops there, before it makes or takes any device or
	 * socket (requests wait until the loop runs, after the ports) */
	if (!rc && (rc = hsd_ctl_start(&d, err, sizeof(err))))
		hsd_log(HS_LOG_ERROR, "%s", err);
	for (unsigned i = 0; !rc && i < file.n_ports; i++)
		if ((rc = hsd_port_add(&d, &file.ports[i], err, sizeof(err))))
			hsd_log(HS_LOG_ERROR, "%s", err);
	if (!rc && (rc = hsd_metrics_start(&d, err, sizeof(err))))
		hsd_log(HS_LOG_ERROR, "%s", err);
	uv_signal_t sigs[3];
	static const int signums[] = {SIGTERM, SIGINT, SIGHUP};
	for (int i = 0; !rc && i < 3; i++) {
		uv_signal_init(&loop, &sigs[i]);
		sigs[i].data = &d;
		uv_signal_start(&sigs[i], on_signal, signums[i]);
	}
	if (!rc) {
		hsd_log(HS_LOG_INFO, "hyperswitchd %s: switch %s running, %u port(s), %u worker(s)",
			HS_VERSION_STRING, d.conf.name, d.n_ports, d.conf.workers);
		notify("READY=1");
		ready(0);
		uv_run(&loop, UV_RUN_DEFAULT);
		notify("STOPPING=1");
	} else {
		ready(1);
	}
	/* the ports go first (their peers see them close), then the switch */
	hsd_metrics_stop(&d);
	hsd_mirrors_del_all(&d);
	hsd_ctl_stop(&d);
	hsd_ports_del_all(&d);
	if (d.sw)
		hsd_events_stop(&d);
	if (d.sw) {
		hs_switch_detach(d.sw);
		hs_switch_destroy(d.sw);
	}
	uv_walk(&loop, close_walk, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop))
		hsd_log(HS_LOG_WARN, "the loop still had handles at exit");
	/* the file's ports were copied into d.ports; free the originals */
	for (unsigned i = 0; i < file.n_ports; i++)
		hsd_port_conf_free(&file.ports[i]);
	free(file.ports);
	d.conf.ports = NULL;
	d.conf.n_ports = 0;
	hsd_conf_free(&d.conf);
	if (pidfile_fd >= 0) {
		unlink(o.pidfile);
		close(pidfile_fd);
	}
	hsd_log(HS_LOG_INFO, "stopped");
	return rc ? 1 : 0;
}
