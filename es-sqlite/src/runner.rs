//! [`Runner`]: the thread that feeds one read model from `$all`.
//!
//! Each round reads a page of the events the model lists (the store's query
//! filters by name: the others are never decoded), hands them to the
//! model's handlers inside one `BEGIN IMMEDIATE` transaction of the model's
//! file, and commits the checkpoint with them. The checkpoint is read again
//! inside that transaction: a second runner of the same model (in another
//! process) that got there first makes this one skip the page, not take it
//! twice.
//!
//! Every `es.subject-forgotten` event reaches every runner, whatever its
//! model lists. For a model that has taken personal data, the model's
//! [`forget`](ReadModel::forget) hook runs in the transaction that moves
//! the checkpoint past it; when the model must be rebuilt, that
//! transaction marks the file for replacement instead, and the runner
//! builds the next generation of the file from the first event, then swaps
//! it in as a new version is (see [`ReadModels`]).

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::Instant;

use es_core::projection::{Progress, ProjectionError};
use es_core::{EventStore, RecordedEvent, Timestamp, Watch};
use rusqlite::{Connection, TransactionBehavior};

use crate::events;
use crate::read_model::{
    Failed, Fed, Feed, Ledger, OnError, ReadModel, ReadModelError, Retried, RunOptions, Status,
    dispatch_all, display_chain, is_forgetting, panicked, sqlite,
};
use crate::read_models::{Edition, ModelFile, ReadModels};

/// A running read model: started by [`ReadModels::start`], it catches up
/// from the model's checkpoint, then follows new events, woken at once by
/// appends of this process and within the poll interval by those of
/// others.
///
/// Dropping it stops the runner (within the poll interval) and waits for
/// it; [`stop`](Runner::stop) does the same and gives the model back.
pub struct Runner<R> {
    shared: Arc<Shared>,
    commands: flume::Sender<Command>,
    thread: Option<JoinHandle<R>>,
    store: crate::SqliteStore,
    _model: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Runner<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("read_model", &self.shared.name)
            .field("version", &self.shared.version)
            .field("progress", &self.shared.lock().progress)
            .finish_non_exhaustive()
    }
}

/// What a runner and its handles share.
struct Shared {
    name: &'static str,
    version: u32,
    stop: AtomicBool,
    state: Mutex<State>,
}

struct State {
    progress: Progress,
    /// Whether this runner's version is the one serving queries.
    serving: bool,
    status: Status,
    waiters: Vec<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the state and wakes every waiter.
    fn publish(&self, change: impl FnOnce(&mut State)) {
        let waiters = {
            let mut state = self.lock();
            change(&mut state);
            std::mem::take(&mut state.waiters)
        };
        for waiter in waiters {
            waiter.wake();
        }
    }
}

/// Where [`Follow::swap_in`] left the model.
enum Swapped {
    /// The version (and generation) serving now.
    Serving(Option<Edition>),
    /// A newer version serves: this runner stops.
    Superseded(u32),
}

/// Requests to the runner's thread, taken between batches.
enum Command {
    RetryParked(flume::Sender<Result<Retried, ReadModelError>>),
}

impl<R: ReadModel> Runner<R> {
    pub(crate) fn spawn(
        models: ReadModels,
        model: R,
        conn: Connection,
        file: ModelFile,
        options: RunOptions,
    ) -> Result<Self, ReadModelError> {
        let shared = Arc::new(Shared {
            name: R::NAME,
            version: R::VERSION,
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                progress: Progress::default(),
                serving: false,
                status: Status::CatchingUp,
                waiters: Vec::new(),
            }),
        });
        let (commands, requests) = flume::unbounded();
        let store = models.store().clone();
        let mut follow = Follow {
            watch: store.watch(),
            filter: events::Filter::of::<R>(),
            checkpoint: file.checkpoint,
            file,
            truncate_pending: false,
            conn,
            models,
            options,
            shared: shared.clone(),
            requests,
            limit_once: None,
            last_registry_check: Instant::now(),
            last_log: Instant::now(),
            _model: PhantomData,
        };
        let thread = std::thread::Builder::new()
            .name(format!("es-read-model-{}", R::NAME))
            .spawn(move || {
                let mut model = model;
                let span = tracing::info_span!("read_model", name = R::NAME, version = R::VERSION);
                let _entered = span.enter();
                // A panic outside the handlers (a bug of ours, a failpoint)
                // ends the runner as a failure that waiters see, never a
                // runner that looks live and takes nothing.
                let ran = catch_unwind(AssertUnwindSafe(|| follow.run(&mut model)));
                let status = match ran {
                    Ok(Ok(status)) => status,
                    Ok(Err(error)) => {
                        tracing::error!(error = %error, "the read model stopped");
                        Status::Failed(Arc::new(error))
                    }
                    Err(panic) => {
                        tracing::error!(panic = %panicked(&*panic), "the read model's runner panicked");
                        Status::Failed(Arc::new(ReadModelError::Ended {
                            name: R::NAME,
                            cause: None,
                        }))
                    }
                };
                follow.shared.publish(|state| state.status = status);
                model
            })
            .map_err(|source| crate::error::OpenError::Io {
                path: store.path().to_path_buf(),
                source,
            })?;
        Ok(Runner {
            shared,
            commands,
            thread: Some(thread),
            store,
            _model: PhantomData,
        })
    }

    /// Where the read model is: its checkpoint, the head, the rate, the lag.
    pub fn progress(&self) -> Progress {
        self.shared.lock().progress
    }

    /// What the runner is doing.
    pub fn status(&self) -> Status {
        self.shared.lock().status.clone()
    }

    /// Waits until this runner's version serves queries and has taken every
    /// event up to `position` (a command's
    /// [`Executed::position`](es_core::Executed)): read your writes. During a
    /// rebuild, that is after the swap.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Ended`] when the runner stops (on request, on an
    /// error, superseded) before.
    pub fn wait_for(
        &self,
        position: u64,
    ) -> impl Future<Output = Result<(), ReadModelError>> + Send + 'static {
        let shared = self.shared.clone();
        std::future::poll_fn(move |cx| {
            let mut state = shared.lock();
            if state.serving && state.progress.position >= position {
                return Poll::Ready(Ok(()));
            }
            if state.status.is_finished() {
                let cause = match &state.status {
                    Status::Failed(error) => Some(error.clone()),
                    _ => None,
                };
                return Poll::Ready(Err(ReadModelError::Ended {
                    name: shared.name,
                    cause,
                }));
            }
            if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                state.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// Waits until the read model has taken every event committed before
    /// this call, and serves.
    ///
    /// # Errors
    ///
    /// As [`wait_for`](Runner::wait_for), and when the store cannot be read.
    pub fn caught_up(&self) -> impl Future<Output = Result<(), ReadModelError>> + Send + 'static {
        let head = self.store.pool().with(events::last_position);
        let wait = head.map(|head| self.wait_for(head));
        async move { wait?.await }
    }

    /// Tries every parked event again, in position order: those the
    /// handler now takes leave the parked list; the others stay, with the
    /// new error. Runs on the runner's thread between batches.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Ended`] when the runner has ended; when the model's
    /// file or the store fails.
    pub fn retry_parked(
        &self,
    ) -> impl Future<Output = Result<Retried, ReadModelError>> + Send + 'static {
        let (reply, answer) = flume::bounded(1);
        let sent = self.commands.send(Command::RetryParked(reply));
        let name = self.shared.name;
        async move {
            let ended = || ReadModelError::Ended { name, cause: None };
            sent.map_err(|_| ended())?;
            answer.recv_async().await.map_err(|_| ended())?
        }
    }

    /// Stops the runner (it finishes the batch it is in) and gives the model
    /// back; a runner started again resumes at the checkpoint.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Ended`] when the runner's thread panicked outside a
    /// handler (a handler's panic fails its event instead).
    pub fn stop(mut self) -> Result<R, ReadModelError> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take();
        let name = self.shared.name;
        match thread.map(JoinHandle::join) {
            Some(Ok(model)) => Ok(model),
            _ => Err(ReadModelError::Ended { name, cause: None }),
        }
    }
}

impl<R> Drop for Runner<R> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(
                read_model = self.shared.name,
                "the runner's thread panicked"
            );
        }
    }
}

/// The runner's thread.
struct Follow<R> {
    conn: Connection,
    models: ReadModels,
    options: RunOptions,
    shared: Arc<Shared>,
    requests: flume::Receiver<Command>,
    watch: Watch,
    /// Which events the model takes.
    filter: events::Filter,
    /// The model's checkpoint: every event up to it is taken.
    checkpoint: u64,
    /// The file the runner feeds: its generation, and what forgetting
    /// needs to know of it.
    file: ModelFile,
    /// A forget hook deleted rows, and the file's log could not be
    /// truncated yet (readers in the way): tried again each poll interval.
    truncate_pending: bool,
    /// Reads the next page with this limit: the events before one that
    /// failed in the last batch.
    limit_once: Option<usize>,
    last_registry_check: Instant,
    last_log: Instant,
    _model: PhantomData<fn() -> R>,
}

impl<R: ReadModel> Follow<R> {
    /// This runner's version and the generation of its file.
    fn mine(&self) -> Edition {
        (R::VERSION, self.file.generation)
    }

    fn run(&mut self, model: &mut R) -> Result<Status, ReadModelError> {
        let mut serving = self.models.serving(R::NAME)?;
        self.shared.publish(|state| {
            state.serving = serving == Some(self.mine());
            state.progress.position = self.checkpoint;
        });
        tracing::info!(checkpoint = self.checkpoint, file = ?self.file, serving = ?serving, "read model starting");
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                tracing::info!(checkpoint = self.checkpoint, "read model stopped");
                return Ok(Status::Stopped);
            }
            while let Ok(command) = self.requests.try_recv() {
                match command {
                    Command::RetryParked(reply) => drop(reply.send(self.retry_parked(model))),
                }
            }
            if self.last_registry_check.elapsed() >= self.options.poll_interval {
                self.last_registry_check = Instant::now();
                match self.look_around()? {
                    Swapped::Superseded(newer) => {
                        return Ok(Status::Superseded { serving: newer });
                    }
                    Swapped::Serving(now) => serving = now,
                }
            }
            let limit = self.limit_once.take().unwrap_or(self.options.batch);
            let store = self.models.store();
            let page = store.pool().with(|conn| {
                events::named_page(conn, store.keys(), self.checkpoint, &self.filter, limit)
            })?;
            let head = page.head;
            if page.events.is_empty() && page.scanned_to <= self.checkpoint {
                if serving != Some(self.mine()) {
                    match self.swap_in(model, serving)? {
                        Swapped::Superseded(newer) => {
                            return Ok(Status::Superseded { serving: newer });
                        }
                        Swapped::Serving(now) => serving = now,
                    }
                    continue;
                }
                self.shared.publish(|state| {
                    state.serving = true;
                    state.status = Status::Live;
                    state.progress = Progress {
                        position: self.checkpoint,
                        head,
                        events_per_second: state.progress.events_per_second,
                        lag_micros: 0,
                    };
                });
                self.watch.wait_timeout(self.options.poll_interval);
                continue;
            }
            let started = Instant::now();
            let lag_micros = page.events.first().map_or(0, |e| {
                Timestamp::now().as_unix_micros() - e.recorded_at.as_unix_micros()
            });
            let taken = page.events.len();
            match self.take(model, page.events, page.scanned_to) {
                Err(ReadModelError::Superseded { serving, .. }) => {
                    tracing::info!(serving, "a newer version serves: stopping");
                    return Ok(Status::Superseded { serving });
                }
                other => other?,
            }
            let elapsed = started.elapsed().as_secs_f64();
            #[allow(clippy::cast_precision_loss)] // a rate, for people
            let rate = if elapsed > 0.0 {
                taken as f64 / elapsed
            } else {
                0.0
            };
            let checkpoint = self.checkpoint;
            self.shared.publish(|state| {
                state.progress = Progress {
                    position: checkpoint,
                    head,
                    events_per_second: rate,
                    lag_micros: if checkpoint >= head { 0 } else { lag_micros },
                };
            });
            tracing::debug!(checkpoint, head, events = taken, "batch taken");
            if self.last_log.elapsed() >= self.options.progress_every && checkpoint < head {
                self.last_log = Instant::now();
                tracing::info!(
                    checkpoint,
                    head,
                    behind = head - checkpoint,
                    events_per_second = rate.round(),
                    "catching up"
                );
            }
        }
    }

    /// What the runner does each poll interval: tries again to truncate
    /// the log if a forgetting left it to do, and reads the registry: a
    /// newer version stops it; a newer generation of its own version
    /// (another process rebuilt it) is the file it feeds from then on.
    fn look_around(&mut self) -> Result<Swapped, ReadModelError> {
        if self.truncate_pending {
            self.truncate_log();
        }
        let serving = self.models.serving(R::NAME)?;
        match serving {
            Some((newer, _)) if newer > R::VERSION => {
                tracing::info!(serving = newer, "a newer version serves: stopping");
                return Ok(Swapped::Superseded(newer));
            }
            Some((_, generation)) if generation > self.file.generation => {
                self.switch(generation)?;
            }
            _ => {}
        }
        Ok(Swapped::Serving(serving))
    }

    /// Makes this runner's file the serving one, once it has taken what
    /// the serving one (`serving`) has: a reader must never see the model
    /// go back in time. Behind it, the events it has taken are committed,
    /// so the next page has them: no wait.
    fn swap_in(
        &mut self,
        model: &mut R,
        serving: Option<Edition>,
    ) -> Result<Swapped, ReadModelError> {
        let models = self.models.clone();
        let swapped = models.swap(R::NAME, serving, self.mine(), &mut |target| {
            self.take_until(model, target)
        });
        let now = match swapped {
            Ok(Some(now)) => now,
            Ok(None) => return Ok(Swapped::Serving(serving)),
            Err(ReadModelError::Superseded { serving, .. }) => {
                tracing::info!(serving, "a newer version serves: stopping");
                return Ok(Swapped::Superseded(serving));
            }
            Err(e) => return Err(e),
        };
        if now == self.mine() {
            tracing::info!(
                checkpoint = self.checkpoint,
                generation = now.1,
                "caught up: serving"
            );
        } else if now.0 > R::VERSION {
            return Ok(Swapped::Superseded(now.0));
        } else if now.0 == R::VERSION && now.1 > self.file.generation {
            self.switch(now.1)?;
        }
        Ok(Swapped::Serving(Some(now)))
    }

    /// Takes a page: its events and the checkpoint `to` in one transaction.
    fn take(
        &mut self,
        model: &mut R,
        events: Vec<RecordedEvent>,
        to: u64,
    ) -> Result<(), ReadModelError> {
        let name = R::NAME;
        let first = events
            .first()
            .map(|e| (e.position, e.stream_id.clone(), e.version, is_forgetting(e)));
        let tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            // The file is locked past the busy timeout (a newer version
            // holding it while it swaps in, another process's runner): the
            // page is read again next round.
            Err(e) if is_busy(&e) => {
                tracing::debug!("the model's file is busy; trying again");
                return Ok(());
            }
            Err(e) => return Err(sqlite(name)(e)),
        };
        let (stored, rebuild_for) = checkpoint_row(&tx, name)?;
        if let Some(forgetting) = rebuild_for {
            // Another runner of this file (another process) met a
            // forgetting it must be rebuilt for.
            drop(tx);
            tracing::info!(
                forgetting,
                "the file is being replaced: building the next generation"
            );
            return self.switch(self.file.generation + 1);
        }
        if stored != self.checkpoint {
            tracing::warn!(
                stored,
                ours = self.checkpoint,
                "another runner moved the checkpoint: skipping to it"
            );
            self.checkpoint = stored;
            return Ok(());
        }
        // Under this file's write lock: a newer version (or generation)
        // swaps in only while holding it, so once it serves, this file
        // takes nothing more.
        match self.models.serving(name)? {
            Some((newer, _)) if newer > R::VERSION => {
                return Err(ReadModelError::Superseded {
                    name,
                    version: R::VERSION,
                    serving: newer,
                });
            }
            Some((_, generation)) if generation > self.file.generation => {
                drop(tx);
                return self.switch(generation);
            }
            _ => {}
        }
        fail::fail_point!("es-sqlite::runner::before-handlers");
        let store = self.models.store().clone();
        let mut feed = Feed {
            keys: store.keys(),
            ledger: &FileLedger,
            personal: self.file.personal,
            forgot: false,
        };
        match dispatch_all(model, &tx, events, &mut feed) {
            Ok(Fed::All) => {
                fail::fail_point!("es-sqlite::runner::after-handlers");
                set_checkpoint(&tx, name, to)?;
                fail::fail_point!("es-sqlite::runner::before-commit");
                tx.commit().map_err(sqlite(name))?;
                fail::fail_point!("es-sqlite::runner::after-commit");
                self.checkpoint = to;
                self.file.personal = feed.personal;
                if feed.forgot {
                    tracing::info!(checkpoint = to, "forgot a data subject in place");
                    self.truncate_log();
                }
                Ok(())
            }
            Ok(Fed::Rebuild { position }) => {
                // The events before the forgetting are taken, and the
                // forgetting with them: this file is to be replaced, in the
                // same commit, so a restart builds the next generation too.
                mark_for_rebuild(&tx, name, position)?;
                tx.commit().map_err(sqlite(name))?;
                self.checkpoint = position;
                tracing::info!(
                    forgetting = position,
                    generation = self.file.generation + 1,
                    "a data subject was forgotten: rebuilding the read model from the first event"
                );
                self.switch(self.file.generation + 1)
            }
            Err(Failed { index, reason }) => {
                drop(tx); // rolls the batch back
                if index > 0 {
                    // Take the events before the failing one alone next time.
                    self.limit_once = Some(index);
                    return Ok(());
                }
                let Some((position, stream, version, forgetting)) = first else {
                    return Ok(());
                };
                let error = ProjectionError {
                    projection: name,
                    position,
                    stream,
                    version,
                    reason,
                };
                self.refused(error, forgetting)
            }
        }
    }

    /// What to do with an event that failed alone: park it (by policy) or
    /// stop (`Err`). A forgetting is never parked: the model would keep
    /// the subject's data.
    fn refused(&mut self, error: ProjectionError, forgetting: bool) -> Result<(), ReadModelError> {
        match self.options.on_error {
            OnError::Park if !forgetting => {
                tracing::warn!(position = error.position, error = %display_chain(&error), "parked an event");
                self.park(&error)
            }
            _ => Err(error.into()),
        }
    }

    /// Moves the runner to the file of generation `generation` (or a newer
    /// one) of its version: a rebuild from its checkpoint (the first event
    /// for a new file), or the generation another runner built.
    fn switch(&mut self, generation: u64) -> Result<(), ReadModelError> {
        let (conn, file) = self.models.open_model::<R>(generation)?;
        self.conn = conn;
        self.file = file;
        self.checkpoint = file.checkpoint;
        self.limit_once = None;
        self.truncate_pending = false;
        let serving = self.models.serving(R::NAME)?;
        let mine = self.mine();
        self.shared.publish(|state| {
            state.serving = serving == Some(mine);
            if !state.serving {
                state.status = Status::CatchingUp;
            }
            state.progress.position = file.checkpoint;
        });
        tracing::info!(
            generation = file.generation,
            checkpoint = file.checkpoint,
            "feeding the read model's file of the next generation"
        );
        Ok(())
    }

    /// Checkpoints the file's write-ahead log and truncates it, so that no
    /// copy of what a forget hook deleted remains there; when readers keep
    /// it from finishing within the busy timeout, tries again later.
    fn truncate_log(&mut self) {
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        self.truncate_pending = match done {
            Ok(0) => false,
            Ok(_) => {
                tracing::debug!("readers keep the read model's log from being truncated: later");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot truncate the read model's log: later");
                true
            }
        };
    }

    /// Takes pages until the checkpoint is at least `target`; returns it.
    fn take_until(&mut self, model: &mut R, target: u64) -> Result<u64, ReadModelError> {
        let generation = self.file.generation;
        while self.checkpoint < target {
            let before = self.checkpoint;
            let store = self.models.store();
            let page = store.pool().with(|conn| {
                events::named_page(
                    conn,
                    store.keys(),
                    self.checkpoint,
                    &self.filter,
                    self.options.batch,
                )
            })?;
            self.take(model, page.events, page.scanned_to)?;
            if self.file.generation != generation {
                // A forgetting made it start the next generation: this one
                // is not to be swapped in. (`target` is above 0, or no page
                // would have been taken.)
                return Ok(0);
            }
            if self.checkpoint == before && self.limit_once.is_none() {
                // Parked or stopped at an event: the caller sees it next round.
                break;
            }
        }
        Ok(self.checkpoint)
    }

    /// Parks the failing event and moves the checkpoint past it, in one
    /// transaction.
    fn park(&mut self, error: &ProjectionError) -> Result<(), ReadModelError> {
        let name = R::NAME;
        let event_name = self.event_name(error.position)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite(name))?;
        let stored = checkpoint(&tx, name)?;
        if stored != self.checkpoint {
            self.checkpoint = stored;
            return Ok(());
        }
        tx.execute(
            "INSERT INTO _es_parked (position, stream_id, version, name, error, attempts, parked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6) \
             ON CONFLICT (position) DO UPDATE SET error = excluded.error, attempts = attempts + 1",
            (
                events::to_i64(error.position),
                error.stream.as_str(),
                events::to_i64(error.version),
                event_name,
                display_chain(error),
                Timestamp::now().as_unix_micros(),
            ),
        )
        .map_err(sqlite(name))?;
        set_checkpoint(&tx, name, error.position)?;
        tx.commit().map_err(sqlite(name))?;
        self.checkpoint = error.position;
        Ok(())
    }

    fn event_name(&self, position: u64) -> Result<String, ReadModelError> {
        // The name only: personal fields stay sealed.
        let event = self
            .models
            .store()
            .pool()
            .with(|conn| events::at_position(conn, None, position))?;
        Ok(event.map(|e| e.name).unwrap_or_default())
    }

    /// Tries each parked event again, each in its own transaction.
    fn retry_parked(&mut self, model: &mut R) -> Result<Retried, ReadModelError> {
        let name = R::NAME;
        let parked = crate::read_models::parked(&self.conn, name)?;
        let mut retried = Retried::default();
        for entry in parked {
            let store = self.models.store();
            let event = store
                .pool()
                .with(|conn| events::at_position(conn, store.keys(), entry.position))?;
            let Some(event) = event else {
                return Err(ReadModelError::Store(es_core::Error::Corrupt {
                    detail: format!(
                        "parked event at position {} is not in the store",
                        entry.position
                    ),
                }));
            };
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite(name))?;
            let mut feed = Feed {
                keys: store.keys(),
                ledger: &FileLedger,
                personal: self.file.personal,
                forgot: false,
            };
            match dispatch_all(model, &tx, vec![event], &mut feed) {
                Ok(_) => {
                    tx.execute(
                        "DELETE FROM _es_parked WHERE position = ?1",
                        [events::to_i64(entry.position)],
                    )
                    .map_err(sqlite(name))?;
                    tx.commit().map_err(sqlite(name))?;
                    self.file.personal = feed.personal;
                    retried.taken += 1;
                }
                Err(Failed { reason, .. }) => {
                    drop(tx);
                    let error = ProjectionError {
                        projection: name,
                        position: entry.position,
                        stream: entry.stream.clone(),
                        version: entry.version,
                        reason,
                    };
                    self.conn
                        .execute(
                            "UPDATE _es_parked SET error = ?2, attempts = attempts + 1 WHERE position = ?1",
                            (events::to_i64(entry.position), display_chain(&error)),
                        )
                        .map_err(sqlite(name))?;
                    retried.still_parked += 1;
                }
            }
        }
        tracing::info!(
            taken = retried.taken,
            still_parked = retried.still_parked,
            "retried parked events"
        );
        Ok(retried)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn checkpoint(conn: &Connection, name: &'static str) -> Result<u64, ReadModelError> {
    let position: i64 = conn
        .prepare_cached("SELECT position FROM _es_read_model")
        .and_then(|mut q| q.query_row([], |r| r.get(0)))
        .map_err(sqlite(name))?;
    u64::try_from(position).map_err(|_| {
        ReadModelError::Store(es_core::Error::Corrupt {
            detail: format!("read model `{name}` has a negative checkpoint"),
        })
    })
}

/// The checkpoint and, when the file is to be replaced, the position of
/// the forgetting it is replaced for.
fn checkpoint_row(
    conn: &Connection,
    name: &'static str,
) -> Result<(u64, Option<u64>), ReadModelError> {
    let (position, rebuild_for): (i64, Option<i64>) = conn
        .prepare_cached("SELECT position, rebuild_for FROM _es_read_model")
        .and_then(|mut q| q.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(sqlite(name))?;
    let corrupt = || {
        ReadModelError::Store(es_core::Error::Corrupt {
            detail: format!("read model `{name}` has a negative checkpoint"),
        })
    };
    let position = u64::try_from(position).map_err(|_| corrupt())?;
    let rebuild_for = rebuild_for
        .map(|p| u64::try_from(p).map_err(|_| corrupt()))
        .transpose()?;
    Ok((position, rebuild_for))
}

/// Moves the checkpoint to the forgetting at `position` and marks the file
/// to be replaced for it by a new generation.
fn mark_for_rebuild(
    conn: &Connection,
    name: &'static str,
    position: u64,
) -> Result<(), ReadModelError> {
    conn.execute(
        "UPDATE _es_read_model SET position = ?1, rebuild_for = ?1",
        [events::to_i64(position)],
    )
    .map_err(sqlite(name))?;
    Ok(())
}

/// A read-model file's record of itself, for forgetting: its
/// `_es_read_model` row.
struct FileLedger;

impl Ledger for FileLedger {
    fn mark_personal(&self, db: &Connection, position: u64) -> rusqlite::Result<()> {
        db.prepare_cached("UPDATE _es_read_model SET personal_at = ?1 WHERE personal_at IS NULL")?
            .execute([events::to_i64(position)])?;
        Ok(())
    }

    fn state(&self, db: &Connection) -> rusqlite::Result<(bool, u64)> {
        db.prepare_cached("SELECT personal_at IS NOT NULL, created_at_head FROM _es_read_model")?
            .query_row([], |r| {
                let head: i64 = r.get(1)?;
                Ok((r.get(0)?, u64::try_from(head).unwrap_or(0)))
            })
    }
}

fn set_checkpoint(
    conn: &Connection,
    name: &'static str,
    position: u64,
) -> Result<(), ReadModelError> {
    conn.prepare_cached("UPDATE _es_read_model SET position = ?1")
        .and_then(|mut q| q.execute([events::to_i64(position)]))
        .map_err(sqlite(name))?;
    Ok(())
}
