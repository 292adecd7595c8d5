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
type pool[T any] struct {
	lanes  []chan T
	shared chan T        // nil with one worker
	quit   chan struct{} // closed by stop: workers exit after the current job
	seed   maphash.Seed
	wg     sync.WaitGroup
	done   chan struct{} // closed when every worker has exited
	gids   []atomic.Uint64
	quitMu sync.Once
}

// newPool starts workers goroutines that call work for each job. Each queue
// holds up to buffer jobs (lanes split buffer between them).
func newPool[T any](workers, buffer int, work func(T)) *pool[T] {
	p := &pool[T]{
		lanes: make([]chan T, workers),
		quit:  make(chan struct{}),
		seed:  maphash.MakeSeed(),
		done:  make(chan struct{}),
		gids:  make([]atomic.Uint64, workers),
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
		select {
		case <-p.quit:
			return
		default:
		}
		select {
		case j, ok := <-lane:
			if !ok {
				lane = nil
				continue
			}
			work(j)
		case j, ok := <-shared:
			if !ok {
				shared = nil
				continue
			}
			work(j)
		case <-p.quit:
			return
		}
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

// stop makes workers exit after their current job, leaving queued jobs.
func (p *pool[T]) stop() { p.quitMu.Do(func() { close(p.quit) }) }

// closeQueues makes workers exit once the queues are empty. The caller must
// guarantee that nothing is sent afterwards.
func (p *pool[T]) closeQueues() {
	for _, l := range p.lanes {
		close(l)
	}
	if p.shared != nil {
		close(p.shared)
	}
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

// drain removes the jobs still queued and passes each to fn. Call it after
// stop and once no more jobs are sent.
func (p *pool[T]) drain(fn func(T)) {
	qs := p.lanes
	if p.shared != nil {
		qs = append(qs[:len(qs):len(qs)], p.shared)
	}
	for _, q := range qs {
		for more := true; more; {
			select {
			case j, ok := <-q:
				if !ok {
					more = false
					continue
				}
				fn(j)
			default:
				more = false
			}
		}
	}
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
