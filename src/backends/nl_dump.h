/*
 * nl_dump.h - one rtnetlink request and its whole answer, for the
 * backends' control sides (libmnl).
 */
#ifndef HS_NL_DUMP_H
#define HS_NL_DUMP_H

#include <libmnl/libmnl.h>

/* Sends the request built at the start of buf (a MNL_SOCKET_BUFFER_SIZE
 * buffer, reused for the answer) and runs cb on every message of its
 * answer, up to NLMSG_DONE, the ack (NLM_F_ACK) or an error; a request
 * with neither NLM_F_DUMP nor NLM_F_ACK has one datagram for answer. Datagrams answering an earlier
 * request (one that timed out) are skipped. 0, the negative error the
 * kernel answered, *cb_rc if cb stopped with MNL_CB_ERROR and set it, or
 * -errno (a receive timeout: -EAGAIN). */
int hs_nl_request(struct mnl_socket *nl, char *buf, mnl_cb_t cb, void *data, const int *cb_rc);

/* Starts a request of `type` at the start of buf: NLM_F_REQUEST | flags,
 * the next sequence number of *seq. */
struct nlmsghdr *hs_nl_req(char *buf, uint32_t *seq, uint16_t type, uint16_t flags);

#endif
