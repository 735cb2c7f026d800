//! Dinic's maximum flow on integer capacities (exact: the lower bound must
//! not depend on floating-point luck).

use std::collections::VecDeque;

/// A capacity no cut of the bound's network reaches.
pub const INF: u64 = u64::MAX / 4;

#[derive(Clone, Debug)]
struct Edge {
    to: usize,
    cap: u64,
}

/// A flow network; edges come in pairs (forward at 2k, residual at 2k + 1).
#[derive(Clone, Debug, Default)]
pub struct MaxFlow {
    edges: Vec<Edge>,
    adj: Vec<Vec<usize>>,
    level: Vec<i32>,
    next: Vec<usize>,
}

impl MaxFlow {
    pub fn new(nodes: usize) -> MaxFlow {
        MaxFlow {
            edges: Vec::new(),
            adj: vec![Vec::new(); nodes],
            level: vec![0; nodes],
            next: vec![0; nodes],
        }
    }

    pub fn add_edge(&mut self, from: usize, to: usize, cap: u64) {
        self.adj[from].push(self.edges.len());
        self.edges.push(Edge { to, cap });
        self.adj[to].push(self.edges.len());
        self.edges.push(Edge { to: from, cap: 0 });
    }

    fn bfs(&mut self, s: usize, t: usize) -> bool {
        self.level.iter_mut().for_each(|l| *l = -1);
        self.level[s] = 0;
        let mut q = VecDeque::from([s]);
        while let Some(u) = q.pop_front() {
            for &e in &self.adj[u] {
                let Edge { to, cap } = self.edges[e];
                if cap > 0 && self.level[to] < 0 {
                    self.level[to] = self.level[u] + 1;
                    q.push_back(to);
                }
            }
        }
        self.level[t] >= 0
    }

    /// Pushes up to `limit` from `u` to `t` along the level graph. The
    /// bound's networks have at most seven levels, so recursion is shallow.
    fn dfs(&mut self, u: usize, t: usize, limit: u64) -> u64 {
        if u == t {
            return limit;
        }
        while self.next[u] < self.adj[u].len() {
            let e = self.adj[u][self.next[u]];
            let Edge { to, cap } = self.edges[e];
            if cap > 0 && self.level[to] == self.level[u] + 1 {
                let pushed = self.dfs(to, t, limit.min(cap));
                if pushed > 0 {
                    self.edges[e].cap -= pushed;
                    self.edges[e ^ 1].cap += pushed;
                    return pushed;
                }
            }
            self.next[u] += 1;
        }
        0
    }

    /// The maximum flow from `s` to `t` (the network keeps the residual).
    pub fn run(&mut self, s: usize, t: usize) -> u64 {
        let mut flow = 0u64;
        while self.bfs(s, t) {
            self.next.iter_mut().for_each(|n| *n = 0);
            loop {
                let f = self.dfs(s, t, INF);
                if f == 0 {
                    break;
                }
                flow = flow.saturating_add(f);
            }
        }
        flow
    }

    /// Nodes reachable from `s` in the residual network (the source side of
    /// a minimum cut) after [`MaxFlow::run`].
    pub fn source_side(&self, s: usize) -> Vec<bool> {
        let mut seen = vec![false; self.adj.len()];
        seen[s] = true;
        let mut q = VecDeque::from([s]);
        while let Some(u) = q.pop_front() {
            for &e in &self.adj[u] {
                let Edge { to, cap } = self.edges[e];
                if cap > 0 && !seen[to] {
                    seen[to] = true;
                    q.push_back(to);
                }
            }
        }
        seen
    }
}
