package eventstream

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// pool is the bounded worker pool of one subscription: a fixed number of
// worker goroutines fed by bounded queues that together hold at most
// BufferSize deliveries.
//
// With one worker there is one queue of BufferSize, so deliveries are
// handled in the order they were queued. With n workers each worker owns a
// lane for keyed deliveries (a key always maps to the same lane, so per-key
// order holds) of max(1, BufferSize/(8n)), and the workers share one queue
// for unkeyed deliveries that holds the rest (config validation makes
// BufferSize exceed n, so it holds at least one).
//
// The owner stops input, then calls close: the workers handle what is
// queued and exit. After setAside they put what they receive aside for
// leftovers instead of handling it.
//
// With one worker the transport may instead hand the pool a source (src):
// the worker then takes messages straight from the adapter's channel and
// decodes them itself, one goroutine hand-off per message fewer,
// and nothing is queued in the pool (the adapter bounds what it reads
// ahead). It stops taking messages when the subscription stops; what the
// adapter still holds stays unacknowledged and is redelivered.
//
// Tried and left out: lanes only (buffer/n each, keyless deliveries spread
// round-robin, every worker a plain receive on its lane, no shared queue and
// no select). BenchmarkMemoryFloor conc8-seq/conc8-par64, the two builds
// alternated: no difference in cpu-ns/op beyond the run-to-run spread, and
// a keyless event would wait behind a slow handler while other workers idle.
type pool struct {
	lanes  []chan delivery
	shared chan delivery // nil with one worker
	seed   maphash.Seed
	s      *subscription // the workers call s.processOne

	// src is the adapter's channel when the single worker reads it
	// itself; nil otherwise. decode turns an adapter's message into a
	// delivery: the workers decode what the reader queued undecoded (a
	// delivery with neither event nor undecodable). Both are set by the
	// transport's attach, before start.
	src    <-chan Message
	decode func(Message) delivery
	n      int // workers

	aside     atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup
	done      chan struct{} // closed when every worker has exited

	mu   sync.Mutex
	left []delivery // set aside after setAside
}

// worker is one worker goroutine's state. cur and attempt are what it is
// handling, so that a replacement can resume when a handler calls
// runtime.Goexit.
type worker struct {
	p       *pool
	lane    chan delivery
	cur     delivery
	attempt int
	actx    context.Context // the context of cur's last handler attempt
	// sharedFirst says the next receive polls the shared queue before
	// the lane.
	sharedFirst bool
}

// newPool returns the pool of workers goroutines that call s.process for
// what is queued, once start has started them.
func newPool(s *subscription, workers, buffer int) *pool {
	p := &pool{lanes: make([]chan delivery, workers), seed: maphash.MakeSeed(), s: s, n: workers, done: make(chan struct{})}
	if workers == 1 {
		p.lanes[0] = make(chan delivery, buffer)
	} else {
		laneCap := max(1, buffer/(2*workers))
		p.shared = make(chan delivery, buffer-workers*laneCap)
		for i := range p.lanes {
			p.lanes[i] = make(chan delivery, laneCap)
		}
	}
	return p
}

// start starts the workers. Call it once.
func (p *pool) start() {
	p.wg.Add(p.n)
	for i := range p.n {
		go (&worker{p: p, lane: p.lanes[i]}).run(nil)
	}
	go func() { p.wg.Wait(); close(p.done) }()
}

// resume is what a replacement worker continues with.
type resume struct {
	d       delivery
	attempt int
}

// run is the worker loop. If a handler calls runtime.Goexit, the deferred
// function sees the loop end without returning and starts a replacement
// goroutine that resumes the delivery after the attempt that exited (so no
// accepted event vanishes and the pool keeps its size).
func (w *worker) run(r *resume) {
	returned := false
	defer func() {
		if returned {
			w.p.wg.Done()
			return
		}
		next := &worker{p: w.p, lane: w.lane}
		go next.run(&resume{d: w.cur, attempt: w.attempt})
	}()
	s := w.p
	if r != nil { // continue the delivery whose handler attempt called Goexit
		s.s.processOne(w, r.d, r.attempt+1, errGoexit)
	}
	if s.src != nil {
		w.runDirect()
		returned = true
		return
	}
	lane, shared := w.lane, s.shared
	for lane != nil || shared != nil {
		var d delivery
		var ok bool
		if shared == nil { // one worker, or the shared queue is drained: a plain receive is cheaper than select
			if d, ok = <-lane; !ok {
				break
			}
		} else {
			// A receive that finds a delivery waiting takes one channel
			// lock (none for an empty channel); the two-case select
			// below locks both, and workers and senders contend for
			// the shared queue's lock. Which queue is polled first
			// alternates, as fair as the select's random choice.
			first, second := &lane, &shared
			if w.sharedFirst {
				first, second = second, first
			}
			w.sharedFirst = !w.sharedFirst
			got := false
			if d, ok, got = poll(*first); !got {
				if d, ok, got = poll(*second); got {
					first = second
				}
			}
			if got {
				if !ok {
					*first = nil
					continue
				}
			} else {
				select {
				case d, ok = <-lane:
					if !ok {
						lane = nil
						continue
					}
				case d, ok = <-shared:
					if !ok {
						shared = nil
						continue
					}
				}
			}
		}
		if s.aside.Load() {
			s.mu.Lock()
			s.left = append(s.left, d)
			s.mu.Unlock()
			continue
		}
		s.s.processOne(w, d, 1, nil)
	}
	returned = true
}

// runDirect is the loop of the single worker of direct mode. When the
// adapter closes its channel on its own the subscription is ended.
func (w *worker) runDirect() {
	p, s := w.p, w.p.s
	for {
		var m Message
		var ok bool
		select { // without a message waiting this is a cheap poll, the blocking select follows
		case m, ok = <-p.src:
		default:
			select {
			case m, ok = <-p.src:
			case <-s.stopping:
				return
			}
		}
		if !ok {
			select {
			case <-s.stopping:
			default:
				go s.endedByAdapter() // it waits for this worker
			}
			return
		}
		if p.aside.Load() || isClosed(s.stopping) {
			return // stopping: m stays unacknowledged and is redelivered
		}
		s.processOne(w, p.decode(m), 1, nil)
	}
}

// poll receives from ch if a delivery is waiting or ch is closed (got true,
// ok false when closed); it does not block. A nil ch has nothing waiting.
func poll(ch chan delivery) (d delivery, ok, got bool) {
	select {
	case d, ok = <-ch:
		return d, ok, true
	default:
		return delivery{}, false, false
	}
}

// isClosed reports whether ch is closed; it does not block.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// queue returns the queue for a delivery with the given key; bkey, when
// set, is the key as bytes (the same lane as key string(bkey)).
func (p *pool) queue(key string, bkey []byte) chan delivery {
	switch {
	case p.shared == nil:
		return p.lanes[0]
	case len(bkey) > 0: // the same lane as key string(bkey)
		return p.lanes[maphash.Bytes(p.seed, bkey)%uint64(len(p.lanes))]
	case key == "":
		return p.shared
	}
	return p.lanes[maphash.String(p.seed, key)%uint64(len(p.lanes))]
}

// close makes the workers handle (or set aside) what is queued and exit. The
// caller guarantees that nothing is sent afterwards. Idempotent.
func (p *pool) close() {
	p.closeOnce.Do(func() {
		for _, l := range p.lanes {
			close(l)
		}
		if p.shared != nil {
			close(p.shared)
		}
	})
}

// setAside makes the workers put what they receive aside instead of
// handling it. Running handler calls are not interrupted.
func (p *pool) setAside() { p.aside.Store(true) }

// waitUntil waits until every worker has exited or deadline passes and
// reports whether they exited.
func (p *pool) waitUntil(deadline time.Time) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// leftovers returns what was set aside. Call it once the workers have exited.
func (p *pool) leftovers() []delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.left
	p.left = nil
	return l
}
