package eventstream

import (
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// pool is the bounded worker pool of one subscription: a fixed number of
// worker goroutines fed by bounded queues.
//
// With one worker there is one queue, so jobs are handled in the order they
// were queued. With more workers each worker owns a lane queue for keyed jobs
// (a key always maps to the same lane, so per-key order holds) and all workers
// share one queue for unkeyed jobs.
//
// The owner ends a pool with close (workers handle every queued job, then
// exit) and, to give up on queued jobs, stop (workers set the remaining jobs
// aside for leftovers instead of handling them).
type pool[T any] struct {
	lanes   []chan T
	shared  chan T // nil with one worker
	seed    maphash.Seed
	stopped atomic.Bool
	stopCh  chan struct{} // closed by stop; ends retry waits
	stopMu  sync.Once
	closeMu sync.Once
	wg      sync.WaitGroup
	done    chan struct{} // closed when every worker has exited
	gids    []atomic.Uint64

	mu   sync.Mutex
	left []T // jobs set aside after stop
}

// newPool starts workers goroutines that call work for each job. Each queue
// holds up to buffer jobs (lanes split buffer between them).
func newPool[T any](workers, buffer int, work func(T)) *pool[T] {
	p := &pool[T]{
		lanes:  make([]chan T, workers),
		seed:   maphash.MakeSeed(),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		gids:   make([]atomic.Uint64, workers),
	}
	if workers == 1 {
		p.lanes[0] = make(chan T, buffer)
	} else {
		p.shared = make(chan T, buffer)
		for i := range p.lanes {
			p.lanes[i] = make(chan T, max(1, buffer/workers))
		}
	}
	p.wg.Add(workers)
	for i := range workers {
		go p.run(i, work)
	}
	go func() { p.wg.Wait(); close(p.done) }()
	return p
}

func (p *pool[T]) run(i int, work func(T)) {
	defer p.wg.Done()
	p.gids[i].Store(goid())
	lane, shared := p.lanes[i], p.shared
	for lane != nil || shared != nil {
		var j T
		var ok bool
		if shared == nil {
			j, ok = <-lane
			if !ok {
				return
			}
		} else {
			var fromLane bool
			j, ok, fromLane = recv2(lane, shared)
			if !ok {
				if fromLane {
					lane = nil
				} else {
					shared = nil
				}
				continue
			}
		}
		if p.stopped.Load() {
			p.mu.Lock()
			p.left = append(p.left, j)
			p.mu.Unlock()
			continue
		}
		work(j)
	}
}

// recv2 receives from a or b (either may be nil) and reports whether the
// value came from a.
func recv2[T any](a, b chan T) (T, bool, bool) {
	select {
	case j, ok := <-a:
		return j, ok, true
	case j, ok := <-b:
		return j, ok, false
	}
}

// queue returns the queue for a job with the given key.
func (p *pool[T]) queue(key string) chan T {
	if p.shared == nil {
		return p.lanes[0]
	}
	if key == "" {
		return p.shared
	}
	return p.lanes[maphash.String(p.seed, key)%uint64(len(p.lanes))]
}

// queueBytes is queue for a key held in a byte slice.
func (p *pool[T]) queueBytes(key []byte) chan T {
	if p.shared == nil {
		return p.lanes[0]
	}
	if len(key) == 0 {
		return p.shared
	}
	return p.lanes[maphash.Bytes(p.seed, key)%uint64(len(p.lanes))]
}

// close makes the workers handle what is queued and exit. The caller must
// guarantee that nothing is sent afterwards. Idempotent.
func (p *pool[T]) close() {
	p.closeMu.Do(func() {
		for _, l := range p.lanes {
			close(l)
		}
		if p.shared != nil {
			close(p.shared)
		}
	})
}

// stop makes the workers set queued jobs aside (see leftovers) instead of
// handling them, ends retry waits, and closes the queues: the caller must
// guarantee that nothing is sent afterwards. Running jobs are not
// interrupted.
func (p *pool[T]) stop() {
	p.stopMu.Do(func() {
		p.stopped.Store(true)
		close(p.stopCh)
	})
	p.close()
}

// wait waits up to d for every worker to exit and reports whether they did.
func (p *pool[T]) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// isWorker reports whether the calling goroutine is one of the workers.
func (p *pool[T]) isWorker() bool {
	id := goid()
	for i := range p.gids {
		if p.gids[i].Load() == id {
			return true
		}
	}
	return false
}

// leftovers returns the jobs set aside after stop. Call it once the
// workers have exited.
func (p *pool[T]) leftovers() []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.left
	p.left = nil
	return l
}

// goid returns the ID of the calling goroutine. It is used only to detect
// that Off is called from a handler of the subscription being removed, which
// must not wait for itself.
func goid() uint64 {
	var buf [32]byte
	n := runtime.Stack(buf[:], false)
	const prefix = "goroutine "
	var id uint64
	for _, c := range buf[len(prefix):n] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}
