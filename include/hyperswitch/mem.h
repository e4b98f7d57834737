/*
 * hyperswitch/mem.h - the "mem" backend: a port the host program itself
 * sends and receives frames through, in bursts.
 *
 * Each queue pair is two single-producer/single-consumer rings shared with
 * the switch, shaped like a virtio device's:
 *
 *  - transmit: the host queues descriptors that *reference* its own frame
 *    memory (hs_mem_tx_burst). The switch copies each frame once, straight
 *    into the receivers' buffers, then completes the descriptor; the host
 *    learns which frames are done, in order, from hs_mem_tx_reap() and may
 *    reuse their memory only then.
 *  - receive: the port owns ring_size buffers of buf_size bytes, posted to
 *    the switch. The switch writes frames into them at switching time;
 *    hs_mem_rx_burst() returns pointers to them and hs_mem_rx_release()
 *    posts them again.
 *
 * Threading: per queue, one thread at a time may call the tx functions
 * and one (possibly another) the rx functions. hs_mem_tx_burst switches
 * the frames in the calling thread (sender context) unless an offload
 * worker takes the queue.
 */
#ifndef HYPERSWITCH_MEM_H
#define HYPERSWITCH_MEM_H

#include <sys/uio.h>

#include <hyperswitch/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HS_MEM_BACKEND "mem"

/* hs_mem_config.flags */
#define HS_MEM_NO_KICK 0x1 /* hs_mem_tx_burst only queues; the host calls
			      hs_port_kick() itself (to batch several) */
#define HS_MEM_RX_NOTIFY_ALWAYS 0x2 /* the host always wants the rx eventfd
				       signalled (a consumer that sleeps
				       between frames), not only when armed */

/* Backend config for hs_port_config.backend_config (backend "mem"). Valid
 * when zero-initialised. */
struct hs_mem_config {
	uint16_t n_queues;  /* queue pairs; 0 -> 1 */
	uint32_t ring_size; /* entries per ring, power of two; 0 -> 256 */
	uint32_t buf_size;  /* bytes per receive buffer; 0 -> 2048 */
	uint32_t caps;      /* offloads the host accepts on receive (HS_CAP_*);
			       frames are finished in software otherwise */
	uint32_t flags;     /* HS_MEM_* */
};
#define HS_MEM_CONFIG_SIZE_V1 (offsetof(struct hs_mem_config, flags) + sizeof(uint32_t))

/* One frame. On transmit: either data/len, or iov/iovcnt when iov is set
 * (a scatter-gather frame); the memory must stay untouched until the
 * cookie comes back from hs_mem_tx_reap(). On receive: data/len point into
 * the port's buffer, valid until hs_mem_rx_release(). */
struct hs_mem_frame {
	void *data;
	uint32_t len;
	uint16_t iovcnt;
	const struct iovec *iov;
	struct hs_offload off;
	uint64_t cookie;
};

/* Queues up to n frames for transmission on queue q and (unless
 * HS_MEM_NO_KICK) kicks the switch. Returns the number queued (fewer when
 * the ring is full: reap first) or a negative errno (-EINVAL for a frame
 * with no bytes, too many segments or a length over 64 KiB + headers). */
HS_EXTERN int hs_mem_tx_burst(hs_port_t *port, uint16_t q,
			      const struct hs_mem_frame *frames, unsigned n);

/* Stores the cookies of up to n completed frames, oldest first; returns
 * how many. */
HS_EXTERN int hs_mem_tx_reap(hs_port_t *port, uint16_t q, uint64_t *cookies,
			     unsigned n);

/* Returns up to n received frames (pointing into the port's buffers),
 * oldest first, without consuming them. Slots of frames whose copy failed
 * (published empty) are skipped and posted again, which, like a release,
 * may move frames waiting in the switch's backlog in, in this thread. */
HS_EXTERN int hs_mem_rx_burst(hs_port_t *port, uint16_t q,
			      struct hs_mem_frame *frames, unsigned n);

/* Consumes the n oldest received frames and posts their buffers again;
 * frames waiting in the switch's backlog for this queue move in at once,
 * in this thread (it may wait for a delivery to the queue to finish). */
HS_EXTERN int hs_mem_rx_release(hs_port_t *port, uint16_t q, unsigned n);

/* Copies the oldest received frame into buf (up to len bytes), releases it
 * and returns its length; -EAGAIN if none is waiting; -EMSGSIZE (frame
 * still released) if buf was too small. A convenience for tests and
 * control traffic: it costs a second copy. */
HS_EXTERN int hs_mem_recv(hs_port_t *port, uint16_t q, void *buf, size_t len,
			  struct hs_offload *off);

/* Notifications, for a host that sleeps while waiting for frames: an
 * eventfd that becomes readable when frames are delivered to queue q, but
 * only while armed (hs_mem_rx_arm); the switch disarms it when it fires.
 * hs_mem_rx_arm returns 1 if frames are already waiting (do not sleep). */
HS_EXTERN int hs_mem_rx_fd(hs_port_t *port, uint16_t q);
HS_EXTERN int hs_mem_rx_arm(hs_port_t *port, uint16_t q);

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_MEM_H */
