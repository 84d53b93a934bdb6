//! ImageLocality: prefer nodes that already have the pod's images (sizes scaled by how
//! widely the image is spread), when nodes report `status.images`.

use crate::cache::{Cache, NodeInfo, PodInfo, normalize_image};
use crate::framework::{MAX_NODE_SCORE, Plugin, Prepared};

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The ImageLocality score.
pub struct ImageLocality;

struct Images {
    /// (normalized image, spread factor = nodes with it / all nodes).
    images: Vec<(String, f64)>,
    containers: i64,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    fn filters(&self) -> bool {
        false
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_score(&self, pod: &PodInfo, cache: &Cache, _: &[&NodeInfo]) -> Prepared {
        let spec = pod.spec();
        let all = cache.node_count().max(1) as f64;
        let images: Vec<(String, f64)> = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.image.as_deref())
            .map(normalize_image)
            .map(|i| {
                let spread = cache.image_node_count(&i) as f64 / all;
                (i, spread)
            })
            .filter(|(_, spread)| *spread > 0.0)
            .collect();
        if images.is_empty() {
            return Prepared::skip();
        }
        let containers = (spec.containers.len() + spec.init_containers.as_ref().map_or(0, Vec::len)) as i64;
        Prepared::with(Images { images, containers })
    }

    fn score(&self, _: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> i64 {
        let Some(p) = prepared.get::<Images>() else {
            return 0;
        };
        let sum: i64 = p
            .images
            .iter()
            .filter_map(|(i, spread)| node.images.get(i).map(|size| (*size as f64 * spread) as i64))
            .sum();
        let max = MAX_CONTAINER_THRESHOLD * p.containers.max(1);
        let clamped = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod, scores};
    use serde_json::json;

    #[test]
    fn nodes_with_the_image_rank_higher() {
        let img = |n: &str, size: i64| json!({"images": [{"names": [n], "sizeBytes": size}]});
        let nodes = vec![
            node("has", img("docker.io/library/big:1", 500 * MB)),
            node("small", img("docker.io/library/other:1", 900 * MB)),
            node("none", json!({})),
        ];
        let p = pod(json!({"containers": [{"name": "c", "image": "big:1"}]}));
        // 500 MB × 1/3 spread = 166 MB: (166-23)/(1000-23) × 100 = 14.
        assert_eq!(
            scores(&ImageLocality, nodes, vec![], &p),
            [("has".into(), 14), ("none".into(), 0), ("small".into(), 0)]
        );
    }
}
