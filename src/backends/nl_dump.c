/* nl_dump.c - one rtnetlink request and its whole answer (nl_dump.h). */
#include <errno.h>
#include <stdbool.h>

#include "nl_dump.h"

int hs_nl_request(struct mnl_socket *nl, char *buf, mnl_cb_t cb, void *data, const int *cb_rc)
{
	const struct nlmsghdr *req = (const struct nlmsghdr *)buf;
	uint32_t seq = req->nlmsg_seq;
	/* without a dump's DONE or an ack, the first answer is the whole */
	bool single = !(req->nlmsg_flags & (NLM_F_DUMP | NLM_F_ACK));
	if (mnl_socket_sendto(nl, buf, req->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, MNL_SOCKET_BUFFER_SIZE);
		if (n < 0)
			return -errno;
		if ((size_t)n >= sizeof(struct nlmsghdr) &&
		    ((const struct nlmsghdr *)buf)->nlmsg_seq != seq)
			continue; /* an earlier request's late answer */
		int r = mnl_cb_run(buf, (size_t)n, seq, mnl_socket_get_portid(nl), cb, data);
		if (r == MNL_CB_ERROR)
			return cb_rc && *cb_rc ? *cb_rc : errno ? -errno : -EIO;
		if (r == MNL_CB_STOP || single)
			return 0;
	}
}

struct nlmsghdr *hs_nl_req(char *buf, uint32_t *seq, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
	h->nlmsg_type = type;
	h->nlmsg_flags = NLM_F_REQUEST | flags;
	h->nlmsg_seq = ++*seq;
	return h;
}
