// TSan builds only: lets ThreadSanitizer see absl::Mutex.
//
// Debian's abseil is not built with -fsanitize=thread, so its Mutex never tells TSan when it is
// locked, and TSan reports races on data that is correctly guarded (seen on
// LeaseTable::next_id_). Linked into a test executable, this file defines the Mutex and CondVar
// entry points our code calls: each calls abseil's own (found with dlsym(RTLD_NEXT)) and tells
// TSan what happened through its mutex annotation interface, as abseil does itself when it is
// built with TSan. Waits (Await, LockWhen, CondVar::Wait) release and re-take the mutex inside
// abseil, so they are annotated as an unlock before and a lock after, and their conditions are
// evaluated as under the mutex (EvalHeld). Checked: a counter under
// an absl::Mutex gives no report; an unguarded one still does.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"

// These definitions stand in for abseil's own, whose lock annotations describe the real effect.
#pragma clang diagnostic ignored "-Wthread-safety-analysis"

#define KVTIER_STR2(x) #x
#define KVTIER_STR(x) KVTIER_STR2(x)

namespace {

// abseil's own definition of a member of absl::<inline namespace>::`rest` (mangled).
template <typename F>
F Real(const char* rest) {
  const std::string ns = KVTIER_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = "_ZN4absl" + std::to_string(ns.size()) + ns + rest;
  void* f = dlsym(RTLD_NEXT, name.c_str());
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_shim: abseil has no %s\n", name.c_str());
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

// A condition is evaluated with the mutex held, by the waiter or by the thread unlocking, inside
// abseil: its reads see what was written under the mutex before, and come before what is
// written under it after.
struct HeldCondition {
  const absl::Condition* cond;
  void* mu;
};
bool EvalHeld(HeldCondition* c) {
  __tsan_acquire(c->mu);
  const bool met = c->cond->Eval();
  __tsan_release(c->mu);
  return met;
}

void Locked(void* mu, unsigned flags) {
  __tsan_mutex_pre_lock(mu, flags);
  __tsan_mutex_post_lock(mu, flags, 0);
}
void Unlocking(void* mu, unsigned flags) {
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

Mutex::~Mutex() {
  static auto real = Real<void (*)(Mutex*)>("5MutexD2Ev");
  __tsan_mutex_destroy(this, 0);
  real(this);
}

void Mutex::Lock() {
  static auto real = Real<void (*)(Mutex*)>("5Mutex4LockEv");
  __tsan_mutex_pre_lock(this, 0);
  real(this);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::Unlock() {
  static auto real = Real<void (*)(Mutex*)>("5Mutex6UnlockEv");
  __tsan_mutex_pre_unlock(this, 0);
  real(this);
  __tsan_mutex_post_unlock(this, 0);
}

bool Mutex::TryLock() {
  static auto real = Real<bool (*)(Mutex*)>("5Mutex7TryLockEv");
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool got = real(this);
  __tsan_mutex_post_lock(this, got ? __tsan_mutex_try_lock : __tsan_mutex_try_lock_failed, 0);
  return got;
}

void Mutex::ReaderLock() {
  static auto real = Real<void (*)(Mutex*)>("5Mutex10ReaderLockEv");
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

void Mutex::ReaderUnlock() {
  static auto real = Real<void (*)(Mutex*)>("5Mutex12ReaderUnlockEv");
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

void Mutex::LockWhen(const Condition& cond) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex8LockWhenERKNS0_9ConditionE");
  HeldCondition held{&cond, this};
  real(this, Condition(&EvalHeld, &held));
  Locked(this, 0);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  HeldCondition held{&cond, this};
  const bool met = real(this, Condition(&EvalHeld, &held), timeout);
  Locked(this, 0);
  return met;
}

void Mutex::Await(const Condition& cond) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex5AwaitERKNS0_9ConditionE");
  HeldCondition held{&cond, this};
  Unlocking(this, 0);
  real(this, Condition(&EvalHeld, &held));
  Locked(this, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  HeldCondition held{&cond, this};
  Unlocking(this, 0);
  const bool met = real(this, Condition(&EvalHeld, &held), timeout);
  Locked(this, 0);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  static auto real = Real<void (*)(CondVar*, Mutex*)>("7CondVar4WaitEPNS0_5MutexE");
  Unlocking(mu, 0);
  real(this, mu);
  Locked(mu, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, Duration)>(
      "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Unlocking(mu, 0);
  const bool timed_out = real(this, mu, timeout);
  Locked(mu, 0);
  return timed_out;
}

ABSL_NAMESPACE_END
}  // namespace absl
