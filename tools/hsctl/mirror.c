/*
 * mirror.c - "mirror add", "set", "del", "show": copies of a
 * port's traffic sent to another port (docs/control.md). Captures in
 * progress are mirrors too, to the daemon's internal ports: "show" lists
 * them, and "capture" (capture.c) shares the direction flags.
 */
#include <stdio.h>
#include <string.h>

#include "hsctl.h"

/* args.direction from --rx / --tx. Neither: the daemon's default, both
 * ways. Both flags are refused rather than read as "both": the usage says
 * one or the other. */
int hsctl_set_direction(json_t *args, bool rx, bool tx, const char *cmd)
{
	if (rx && tx)
		return hsctl_usage_error("%s: --rx or --tx, not both (neither: both directions)",
					 cmd);
	if (!rx && !tx)
		return HSCTL_OK;
	return hsctl_set_string(args, "direction", rx ? "rx" : "tx");
}

/* mirror add|set SRC DST [--rx|--tx], mirror del SRC DST: `what` is
 * "add", "set" or "del" */
static int mirror_pair(struct hsctl *h, int argc, char **argv, const char *what)
{
	bool rx = false, tx = false, del = !strcmp(what, "del");
	const struct opt opts[] = {
		{"--rx", NULL, NULL, &rx}, {"--tx", NULL, NULL, &tx}, {NULL, NULL, NULL, NULL},
	};
	char cmd[16], req[16];
	snprintf(cmd, sizeof(cmd), "mirror %s", what);
	snprintf(req, sizeof(req), "mirror.%s", what);
	int n, rc = hsctl_words(h, cmd, argc, argv, del ? NULL : opts, 2, 2, &n);
	if (rc)
		return rc;
	json_t *args = json_object();
	rc = hsctl_set_string(args, "src", argv[0]);
	if (!rc)
		rc = hsctl_set_string(args, "dst", argv[1]);
	if (!rc)
		rc = hsctl_set_direction(args, rx, tx, cmd);
	if (rc) {
		json_decref(args);
		return rc;
	}
	return hsctl_request(h, req, args, NULL);
}

int hsctl_cmd_mirror_add(struct hsctl *h, int argc, char **argv)
{
	return mirror_pair(h, argc, argv, "add");
}

int hsctl_cmd_mirror_set(struct hsctl *h, int argc, char **argv)
{
	return mirror_pair(h, argc, argv, "set");
}

int hsctl_cmd_mirror_del(struct hsctl *h, int argc, char **argv)
{
	return mirror_pair(h, argc, argv, "del");
}

static int print_mirrors(struct hsctl *h, json_t *r)
{
	(void)h;
	const json_t *mirrors = json_object_get(r, "mirrors"), *m;
	size_t i;
	if (!json_is_array(mirrors))
		return hsctl_malformed("mirror.show", "no mirrors list");
	struct table *t = table_new("llll", "SRC", "DST", "DIRECTION", "CAPTURE");
	json_array_foreach(mirrors, i, m) {
		table_json(t, json_object_get(m, "src"));
		table_json(t, json_object_get(m, "dst"));
		table_json(t, json_object_get(m, "direction"));
		table_json(t, json_object_get(m, "capture"));	/* yes, no */
	}
	return table_print(t);
}

int hsctl_cmd_mirror_show(struct hsctl *h, int argc, char **argv)
{
	int n, rc = hsctl_words(h, "mirror show", argc, argv, NULL, 0, 0, &n);
	return rc ? rc : hsctl_request(h, "mirror.show", json_object(), print_mirrors);
}
