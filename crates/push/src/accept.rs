//! Group commit for accepted pushes. Each `/push/send` must answer only once its push is
//! durable, and a commit costs a disk flush (an fsync on SQLite, a WAL flush on PostgreSQL)
//! whatever it holds. So pushes accepted at the same time are stored together: one task
//! writes whatever has arrived while it wrote the previous batch, in one statement and one
//! commit, and answers each caller. Alone, a push is written at once; under load, a commit
//! carries as many pushes as arrived meanwhile (up to [`MAX_PUSHES_PER_INSERT`]).

use tokio::sync::{mpsc, oneshot};

use crate::store::{Deliveries, NewPush, StoreError, MAX_PUSHES_PER_INSERT};

/// Pushes waiting for the writer, beyond which callers wait to hand theirs over.
const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<String, String>>;

/// The writer's front: hand it a push, get its id once it is durable.
pub(crate) struct Acceptor {
    pushes: mpsc::Sender<(NewPush, Reply)>,
}

impl Acceptor {
    /// Starts the writer (on the current runtime); it ends when the acceptor is dropped.
    pub fn start(deliveries: Deliveries) -> Self {
        let (pushes, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write_in_batches(deliveries, queue));
        Self { pushes }
    }

    /// Stores `push`; answers its id once it is committed. An error means it was not stored.
    pub async fn store(&self, push: NewPush) -> Result<String, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Batch("the push writer has stopped".into());
        self.pushes
            .send((push, reply))
            .await
            .map_err(|_| stopped())?;
        match answer.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(StoreError::Batch(e)),
            Err(_) => Err(stopped()),
        }
    }
}

async fn write_in_batches(deliveries: Deliveries, mut queue: mpsc::Receiver<(NewPush, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_PUSHES_PER_INSERT);
    while queue.recv_many(&mut batch, MAX_PUSHES_PER_INSERT).await > 0 {
        let (pushes, replies): (Vec<NewPush>, Vec<Reply>) = batch.drain(..).unzip();
        metrics::histogram!("pushwarden_push_accept_batch_size").record(pushes.len() as f64);
        match deliveries.store_pushes(&pushes).await {
            Ok(ids) => {
                for (reply, id) in replies.into_iter().zip(ids) {
                    // A caller that went away meanwhile: its push is stored all the same.
                    let _ = reply.send(Ok(id));
                }
            }
            Err(e) => {
                // Nothing of the batch was stored, and every caller is told so.
                let why = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(why.clone()));
                }
            }
        }
    }
}
