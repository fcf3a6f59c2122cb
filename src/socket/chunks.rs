//! The bytes of one write. Most writes are a single buffer (a framed small
//! message, a packed response head), kept inline so queueing one costs no
//! extra allocation; the rest are a list.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

#[derive(Debug, Clone)]
pub enum Chunks {
    One(Bytes),
    Many(VecDeque<Bytes>),
}

impl Chunks {
    pub fn empty() -> Self {
        Chunks::Many(VecDeque::new())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Bytes> + '_ {
        let (one, many) = match self {
            Chunks::One(bytes) => (Some(bytes), None),
            Chunks::Many(list) => (None, Some(list)),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().all(Bytes::is_empty)
    }

    /// Drops `n` bytes from the front; returns what of `n` was left over
    /// once every chunk was used up.
    pub(super) fn consume(&mut self, mut n: usize) -> usize {
        match self {
            Chunks::One(bytes) => {
                let taken = n.min(bytes.len());
                bytes.advance(taken);
                n - taken
            }
            Chunks::Many(list) => {
                while let Some(front) = list.front_mut() {
                    if front.len() > n {
                        front.advance(n);
                        return 0;
                    }
                    n -= front.len();
                    list.pop_front();
                }
                n
            }
        }
    }
}

impl From<Bytes> for Chunks {
    fn from(bytes: Bytes) -> Self {
        Chunks::One(bytes)
    }
}

impl From<Vec<Bytes>> for Chunks {
    fn from(mut list: Vec<Bytes>) -> Self {
        match list.len() {
            1 => Chunks::One(list.swap_remove(0)),
            _ => Chunks::Many(list.into()),
        }
    }
}

impl From<VecDeque<Bytes>> for Chunks {
    fn from(list: VecDeque<Bytes>) -> Self {
        Chunks::Many(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_walks_across_chunks_and_reports_the_excess() {
        let mut many = Chunks::from(vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")]);
        assert_eq!(many.consume(4), 0);
        assert_eq!(many.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), vec![b"e".to_vec()]);
        assert_eq!(many.consume(3), 2);
        assert!(many.is_empty());
        let mut one = Chunks::from(Bytes::from_static(b"xyz"));
        assert_eq!(one.consume(1), 0);
        assert_eq!(one.len(), 2);
        assert_eq!(one.consume(5), 3);
    }
}
