#include "pool.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#if defined(__linux__)
#include <sched.h>
#endif

namespace mlxnote {

int default_threads() {
  if (const char* env = std::getenv("MLXNOTE_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) {
      return n;
    }
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    return std::max(1, CPU_COUNT(&set));
  }
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() {
  set_threads(default_threads());
}

ThreadPool::~ThreadPool() {
  stop();
}

void ThreadPool::set_threads(int n) {
  std::lock_guard<std::mutex> lock(submit_);
  n = std::max(1, n);
  if (n == threads_ && static_cast<int>(workers_.size()) == n - 1) {
    return;
  }
  stop();
  threads_ = n;
  start(n - 1);
}

void ThreadPool::start(int workers) {
  quit_ = false;
  for (int i = 0; i < workers; ++i) {
    workers_.emplace_back([this, i] { worker_loop(i + 1); });
  }
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) {
    t.join();
  }
  workers_.clear();
}

void ThreadPool::run(Job& job, int worker) {
  for (;;) {
    int64_t begin = job.next.fetch_add(job.grain);
    if (begin >= job.n) {
      return;
    }
    (*job.fn)(begin, std::min(job.n, begin + job.grain), worker);
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
      if (quit_) {
        return;
      }
      seen = generation_;
      job = job_;
    }
    if (!job) {
      continue;
    }
    job->active.fetch_add(1);
    run(*job, index);
    if (job->active.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const RangeFn& fn) {
  if (n <= 0) {
    return;
  }
  grain = std::max<int64_t>(1, grain);
  if (threads_ == 1 || n <= grain) {
    fn(0, n, 0);
    return;
  }
  std::lock_guard<std::mutex> submit(submit_);
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  job->grain = grain;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = job;
    ++generation_;
  }
  wake_.notify_all();
  run(*job, 0);
  // Every chunk is taken: wait for the workers still running one; a worker that joins
  // later finds no chunk left and never calls fn.
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return job->active.load() == 0; });
  job_.reset();
}

}  // namespace mlxnote
