// A persistent thread pool with dynamic splitting, for mlxnote's CPU kernels.
//
// parallel_for(n, grain, fn) runs fn(begin, end, worker) over [0, n) in chunks of `grain`
// items taken from one atomic counter: a worker that another process keeps off its core
// takes fewer chunks instead of stalling the job (a static split waits for its slowest
// share). The calling thread works too, and waits only for workers that joined the job.
// Workers sleep on a condition variable between jobs (no spinning). Jobs from several
// threads (MLX streams) run one after the other.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mlxnote {

using RangeFn = std::function<void(int64_t begin, int64_t end, int worker)>;

class ThreadPool {
 public:
  static ThreadPool& instance();

  // Total participants (workers + the caller); set_threads(1) runs everything inline.
  int threads() const {
    return threads_;
  }
  void set_threads(int n);

  void parallel_for(int64_t n, int64_t grain, const RangeFn& fn);

  ~ThreadPool();

 private:
  struct Job {
    const RangeFn* fn;
    int64_t n;
    int64_t grain;
    std::atomic<int64_t> next{0};
    std::atomic<int> active{0};
  };

  ThreadPool();
  void start(int workers);
  void stop();
  void worker_loop(int index);
  static void run(Job& job, int worker);

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex submit_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

// Threads to use by default: MLXNOTE_THREADS if set, else the CPUs this process may run on.
int default_threads();

}  // namespace mlxnote
