/*
 * mirror.c - "mirror add", "mirror del", "mirror show": copies of a
 * port's traffic sent to another port (docs/control.md). Captures in
 * progress are mirrors too, to the daemon's internal ports: "show" lists
 * them, and "capture" (capture.c) shares the direction flags.
 */
#include <stdio.h>

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

/* mirror add SRC DST [--rx|--tx], mirror del SRC DST */
static int mirror_pair(struct hsctl *h, int argc, char **argv, bool add)
{
	bool rx = false, tx = false;
	const struct opt opts[] = {
		{"--rx", NULL, NULL, &rx}, {"--tx", NULL, NULL, &tx}, {NULL, NULL, NULL, NULL},
	};
	const char *cmd = add ? "mirror add" : "mirror del";
	int n, rc = hsctl_words(h, cmd, argc, argv, add ? opts : NULL, 2, 2, &n);
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
	return hsctl_request(h, add ? "mirror.add" : "mirror.del", args, NULL);
}

int hsctl_cmd_mirror_add(struct hsctl *h, int argc, char **argv)
{
	return mirror_pair(h, argc, argv, true);
}

int hsctl_cmd_mirror_del(struct hsctl *h, int argc, char **argv)
{
	return mirror_pair(h, argc, argv, false);
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
