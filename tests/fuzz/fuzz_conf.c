/*
 * fuzz_conf.c - hyperswitchd's config reader on hostile input, the way
 * the daemon gets it: a whole config file (libconfig text, read from a
 * file as at start and reload), or hsctl's JSON port objects (a
 * `port.add` object, then a `port.set` one applied on top of it).
 *
 * Beyond not crashing or leaking, it checks what the daemon relies on:
 * a refusal always says why; every port accepted reads back as itself
 * from the JSON that `show` prints for it (so what an operator sees is
 * what runs); and a `port.set` never changes a port's name or type.
 *
 * Input: byte 0 picks the mode (even: file, odd: JSON); for JSON the rest
 * is two documents separated by the first NUL byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../tools/hyperswitchd/conf.h"

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_conf: %s\n", what);
		abort();
	}
}

/* The port as show prints it reads back as the same port. */
static void round_trip(const struct hsd_port_conf *p)
{
	json_t *j = hsd_port_conf_json(p);
	if (!j)
		return; /* out of memory */
	struct hsd_port_conf q;
	char err[512] = "";
	int rc = hsd_port_from_json(j, &q, err, sizeof(err));
	if (rc) {
		char *txt = json_dumps(j, JSON_COMPACT);
		fprintf(stderr, "fuzz_conf: port %s as shown does not read back: %s\n%s\n",
			p->name, err, txt ? txt : "?");
		abort();
	}
	json_t *changed = json_array();
	bool differs = hsd_port_conf_diff(p, &q, changed);
	if (differs) {
		char *txt = json_dumps(changed, JSON_COMPACT);
		fprintf(stderr, "fuzz_conf: port %s reads back changed: %s\n", p->name,
			txt ? txt : "?");
		abort();
	}
	json_decref(changed);
	hsd_port_conf_free(&q);
	json_decref(j);
}

static void from_file(const uint8_t *data, size_t size)
{
	int fd = memfd_create("hsd-conf", MFD_CLOEXEC);
	if (fd < 0)
		return;
	size_t off = 0;
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct hsd_conf c;
	char err[512] = "";
	if (hsd_conf_load(path, &c, err, sizeof(err)) == 0) {
		for (unsigned i = 0; i < c.n_ports; i++)
			round_trip(&c.ports[i]);
		/* the ports are unique among themselves, as the daemon needs */
		for (unsigned i = 0; i < c.n_ports; i++)
			check(hsd_port_check_unique(&c.ports[i], c.ports, c.n_ports,
						    c.ports[i].name, err, sizeof(err)) == 0,
			      "a loaded file has clashing ports");
		hsd_conf_free(&c);
	} else {
		check(err[0] != 0, "a refused file without a reason");
	}
	close(fd);
}

static void from_json(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t n1 = nul ? (size_t)(nul - data) : size;
	json_t *a = json_loadb((const char *)data, n1, JSON_REJECT_DUPLICATES, NULL);
	if (!a)
		return;
	struct hsd_port_conf p;
	char err[512] = "";
	if (json_is_object(a) && hsd_port_from_json(a, &p, err, sizeof(err)) == 0) {
		round_trip(&p);
		json_t *b = nul ? json_loadb((const char *)nul + 1, size - n1 - 1,
					     JSON_REJECT_DUPLICATES, NULL)
				: NULL;
		if (b && json_is_object(b)) {
			struct hsd_port_conf q;
			err[0] = 0;
			if (hsd_port_update_json(&p, b, &q, err, sizeof(err)) == 0) {
				check(!strcmp(p.name, q.name) && p.type == q.type,
				      "port.set changed a name or type");
				round_trip(&q);
				json_t *changed = json_array();
				hsd_port_conf_diff(&p, &q, changed);
				json_decref(changed);
				hsd_port_conf_free(&q);
			} else {
				check(err[0] != 0, "a refused port.set without a reason");
			}
		}
		json_decref(b);
		hsd_port_conf_free(&p);
	} else if (json_is_object(a)) {
		check(err[0] != 0, "a refused port.add without a reason");
	}
	json_decref(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size || size > 65536)
		return 0;
	if (data[0] & 1)
		from_json(data + 1, size - 1);
	else
		from_file(data + 1, size - 1);
	return 0;
}
