/*
 * dump.c - the pcap files of "capture", written with libpcap: one file,
 * or with -G a new one every SECONDS, its name FILE through strftime(3),
 * as tcpdump does. The files keep the daemon's nanoseconds (their magic
 * says so; tcpdump and tshark read them).
 *
 * pcap_dump() returns nothing: write errors are read from its FILE after
 * each frame, so that a full disk ends the capture with a message rather
 * than going on into a file that is cut short.
 */
#include <errno.h>
#include <limits.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hsctl.h"

#define NS 1000000000u

struct dump {
	const char *file;	/* the name, or with -G its pattern; "-": stdout */
	uint64_t rotate_ns;	/* -G; 0: one file */
	uint64_t window_ns;	/* when the current file's window began */
	pcap_t *pcap;		/* captures nothing: holds the linktype and snaplen */
	pcap_dumper_t *out;	/* the file being written; NULL: none */
	bool failed;		/* a write error was reported: say it once */
	char name[PATH_MAX];	/* of the file being written */
};

static const char *shown(const char *name)
{
	return strcmp(name, "-") ? name : "stdout";
}

static int write_error(struct dump *d, int err)
{
	if (!d->failed)
		fprintf(stderr, "hsctl: %s: %s\n", shown(d->name), strerror(err ? err : EIO));
	d->failed = true;
	return HSCTL_ECONN;
}

/* strftime() of the user's pattern. Its format is the user's by design,
 * and strftime's conversions read only the struct tm: no argument can be
 * misread, which is what -Wformat-nonliteral guards against. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static size_t format_time(const char *pattern, uint64_t ts_ns, char *name, size_t size)
{
	time_t t = (time_t)(ts_ns / NS);
	struct tm tm;
	return localtime_r(&t, &tm) ? strftime(name, size, pattern, &tm) : 0;
}
#pragma GCC diagnostic pop

/* The name of a file whose window begins at ts_ns: FILE as it is, or with
 * -G FILE through strftime(3) in local time, as tcpdump names its files. */
static int make_name(const struct dump *d, uint64_t ts_ns, char *name, size_t size)
{
	size_t n = d->rotate_ns ? format_time(d->file, ts_ns, name, size)
				: (size_t)snprintf(name, size, "%s", d->file);
	if (!n || n >= size) {
		fprintf(stderr, "hsctl: %s: makes no file name (empty, or %d bytes or more)\n",
			d->file, PATH_MAX);
		return HSCTL_ECONN;
	}
	return HSCTL_OK;
}

/* "-" is a copy of stdout, so that pcap_dump_close() leaves stdout open
 * for main()'s final flush. */
static int open_file(struct dump *d, const char *name)
{
	int fd = strcmp(name, "-") ? -1 : dup(STDOUT_FILENO);
	FILE *f = fd < 0 ? fopen(name, "wb") : fdopen(fd, "wb");
	if (!f) {
		fprintf(stderr, "hsctl: %s: %s\n", shown(name), strerror(errno));
		if (fd >= 0)
			close(fd);
		return HSCTL_ECONN;
	}
	/* The pcap header goes out with the first flush, before any frame. */
	d->out = pcap_dump_fopen(d->pcap, f);
	if (!d->out) {
		fprintf(stderr, "hsctl: %s: %s\n", shown(name), pcap_geterr(d->pcap));
		fclose(f);
		return HSCTL_ECONN;
	}
	snprintf(d->name, sizeof(d->name), "%s", name);	/* fits: checked by make_name */
	return HSCTL_OK;
}

int dump_flush(struct dump *d)
{
	if (d->failed)
		return HSCTL_ECONN;
	if (!d->out)
		return HSCTL_OK;
	errno = 0;
	if (pcap_dump_flush(d->out) || ferror(pcap_dump_file(d->out)))
		return write_error(d, errno);
	return HSCTL_OK;
}

/* Flushed first: pcap_dump_close() does not say whether the data got out. */
static int close_file(struct dump *d)
{
	int rc = dump_flush(d);
	if (d->out)
		pcap_dump_close(d->out);
	d->out = NULL;
	return rc;
}

/* A new window from ts_ns, in a new file; unless the pattern names the
 * same file again (it is coarser than -G): that one goes on, as opening
 * it anew would truncate the frames of the window before. */
static int rotate(struct dump *d, uint64_t ts_ns)
{
	char name[PATH_MAX];
	int rc = make_name(d, ts_ns, name, sizeof(name));
	if (rc)
		return rc;
	d->window_ns = ts_ns;
	if (!strcmp(name, d->name))
		return HSCTL_OK;
	rc = close_file(d);
	return rc ? rc : open_file(d, name);
}

/* Opens the first file. rotate_s (-G; 0: none) counts from now, like
 * tcpdump's, but windows end by the frames' timestamps, not by our clock:
 * a frame read late still goes in the file of the window it arrived in,
 * and, as in tcpdump, a window without frames makes no file. */
int dump_open(struct dump **dp, const char *file, double rotate_s, int linktype, int snaplen)
{
	struct timespec now;
	struct dump *d = calloc(1, sizeof(*d));
	if (!d)
		return hsctl_nomem();
	clock_gettime(CLOCK_REALTIME, &now);
	d->file = file;
	d->rotate_ns = (uint64_t)(rotate_s * NS);
	d->window_ns = (uint64_t)now.tv_sec * NS + (uint64_t)now.tv_nsec;
	d->pcap = pcap_open_dead_with_tstamp_precision(linktype, snaplen,
						       PCAP_TSTAMP_PRECISION_NANO);
	char name[PATH_MAX];
	int rc = d->pcap ? make_name(d, d->window_ns, name, sizeof(name)) : hsctl_nomem();
	if (!rc)
		rc = open_file(d, name);
	if (rc) {
		dump_close(d);
		return rc;
	}
	*dp = d;
	return HSCTL_OK;
}

int dump_frame(struct dump *d, uint64_t ts_ns, uint32_t orig_len, const unsigned char *data,
	       uint32_t caplen)
{
	if (d->rotate_ns && ts_ns >= d->window_ns + d->rotate_ns) {
		int rc = rotate(d, ts_ns);
		if (rc)
			return rc;
	}
	struct pcap_pkthdr ph = {.caplen = caplen, .len = orig_len};
	ph.ts.tv_sec = (time_t)(ts_ns / NS);
	ph.ts.tv_usec = (suseconds_t)(ts_ns % NS);	/* nanoseconds: the file's precision */
	errno = 0;
	pcap_dump((u_char *)d->out, &ph, data);
	return ferror(pcap_dump_file(d->out)) ? write_error(d, errno) : HSCTL_OK;
}

/* Flushes and closes the file; NULL is nothing to do. */
int dump_close(struct dump *d)
{
	if (!d)
		return HSCTL_OK;
	int rc = close_file(d);
	if (d->pcap)
		pcap_close(d->pcap);
	free(d);
	return rc;
}
