//! Trivial round trips against the real infrastructure `scripts/test.sh` starts, so later
//! tests can rely on it: etcd, the S3 server and dockerd.

use agola_integration_tests::infra;
use aws_sdk_s3::primitives::ByteStream;

#[tokio::test]
async fn etcd_put_get_round_trip() {
    let mut client = etcd_client::Client::connect(infra::etcd_endpoints(), None)
        .await
        .expect("connect to etcd");
    let key = format!("{}/k", infra::unique_name("infra"));
    client.put(key.as_str(), "v1", None).await.expect("put");
    let resp = client.get(key.as_str(), None).await.expect("get");
    let kv = resp.kvs().first().expect("key present");
    assert_eq!(kv.value(), b"v1");
    client.delete(key.as_str(), None).await.expect("delete");
}

#[tokio::test]
async fn s3_put_get_round_trip() {
    let (endpoint, ak, sk) = infra::s3();
    let config = aws_sdk_s3::Config::builder()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            ak, sk, None, None, "test",
        ))
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let bucket = infra::unique_name("infra").to_lowercase();
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    client
        .put_object()
        .bucket(&bucket)
        .key("a/b.txt")
        .body(ByteStream::from_static(b"hello s3"))
        .send()
        .await
        .expect("put object");
    let got = client
        .get_object()
        .bucket(&bucket)
        .key("a/b.txt")
        .send()
        .await
        .expect("get object")
        .body
        .collect()
        .await
        .expect("read body")
        .into_bytes();
    assert_eq!(&got[..], b"hello s3");
}

#[tokio::test]
async fn docker_runs_the_local_busybox_image() {
    use bollard::query_parameters::{
        CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
    };
    use futures::StreamExt;

    let docker = bollard::Docker::connect_with_unix(
        &infra::docker_socket(),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .expect("docker client")
    .negotiate_version()
    .await
    .expect("negotiate docker api version");
    let name = infra::unique_name("agola-infra");
    let body = bollard::models::ContainerCreateBody {
        image: Some(infra::busybox_image()),
        cmd: Some(vec!["sh".into(), "-c".into(), "exit 7".into()]),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .expect("create container");
    docker
        .start_container(
            &name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .expect("start container");
    let mut wait =
        docker.wait_container(&name, Some(WaitContainerOptionsBuilder::default().build()));
    let code = match wait.next().await.expect("wait result") {
        Ok(r) => r.status_code,
        // bollard reports a non-zero exit as an error carrying the code
        Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => code,
        Err(e) => panic!("wait failed: {e}"),
    };
    assert_eq!(code, 7);
    docker
        .remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .expect("remove container");
}
