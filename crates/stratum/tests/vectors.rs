//! Known-answer tests from ESP-Miner's stratum test suite (components/stratum/test/test_mining.c).

use bm13xx::header::sha256d;
use stratum::{Notify, merkle_root};

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn branch(text: &str) -> [u8; 32] {
    unhex(text).try_into().expect("32 bytes")
}

/// "Check coinbase tx construction".
#[test]
fn coinbase_construction() {
    let notify = Notify {
        job_id: "1".into(),
        prev_hash: [0; 32],
        coinb1: unhex(
            "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
        ),
        coinb2: unhex(
            "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
        ),
        merkle_branches: vec![],
        version: 0,
        nbits: 0,
        ntime: 0,
        clean_jobs: false,
    };
    let tx = notify.coinbase(&unhex("e9695791"), &unhex("99999999"));
    assert_eq!(
        hex(&tx),
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008e969579199999999072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000"
    );
}

/// "Test nonce diff checking 2": the coinbase hashed and folded with 13 branches gives the root
/// whose header at nonce 0x0A029ED1 is a difficulty-683 share (checked in bm13xx).
#[test]
fn merkle_root_from_coinbase_and_13_branches() {
    let coinbase = unhex(
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4b0389130cfabe6d6d5cbab26a2599e92916edec5657a94a0708ddb970f5c45b5d12905085617eff8e010000000000000031650707758de07b010000000000001cfd7038212f736c7573682f000000000379ad0c2a000000001976a9147c154ed1dc59609e3d26abb2df2ea3d587cd8c4188ac00000000000000002c6a4c2952534b424c4f434b3ae725d3994b811572c1f345deb98b56b465ef8e153ecbbd27fa37bf1b005161380000000000000000266a24aa21a9ed63b06a7946b190a3fda1d76165b25c9b883bcc6621b040773050ee2a1bb18f1800000000",
    );
    let branches: Vec<[u8; 32]> = [
        "2b77d9e413e8121cd7a17ff46029591051d0922bd90b2b2a38811af1cb57a2b2",
        "5c8874cef00f3a233939516950e160949ef327891c9090467cead995441d22c5",
        "2d91ff8e19ac5fa69a40081f26c5852d366d608b04d2efe0d5b65d111d0d8074",
        "0ae96f609ad2264112a0b2dfb65624bedbcea3b036a59c0173394bba3a74e887",
        "e62172e63973d69574a82828aeb5711fc5ff97946db10fc7ec32830b24df7bde",
        "adb49456453aab49549a9eb46bb26787fb538e0a5f656992275194c04651ec97",
        "a7bc56d04d2672a8683892d6c8d376c73d250a4871fdf6f57019bcc737d6d2c2",
        "d94eceb8182b4f418cd071e93ec2a8993a0898d4c93bc33d9302f60dbbd0ed10",
        "5ad7788b8c66f8f50d332b88a80077ce10e54281ca472b4ed9bbbbcb6cf99083",
        "9f9d784b33df1b3ed3edb4211afc0dc1909af9758c6f8267e469f5148ed04809",
        "48fd17affa76b23e6fb2257df30374da839d6cb264656a82e34b350722b05123",
        "c4f5ab01913fc186d550c1a28f3f3e9ffaca2016b961a6a751f8cca0089df924",
        "cff737e1d00176dd6bbfa73071adbb370f227cfb5fba186562e4060fcec877e1",
    ]
    .into_iter()
    .map(branch)
    .collect();
    let root = merkle_root(sha256d(&coinbase), &branches);
    assert_eq!(
        hex(&root),
        "5bdc1968499c3393873edf8e07a1c3a50a97fc3a9d1a376bbf77087dd63778eb"
    );
}

/// "Validate another merkle root calculation" (5 branches).
#[test]
fn merkle_root_from_coinbase_and_5_branches() {
    let coinbase = unhex(
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff2503777d07062f503253482f0405b8c75208f800880e000000000b2f436f696e48756e74722f0000000001603f352a010000001976a914c633315d376c20a973a758f7422d67f7bfed9c5888ac00000000",
    );
    let branches: Vec<[u8; 32]> = [
        "f0dbca1ee1a9f6388d07d97c1ab0de0e41acdf2edac4b95780ba0a1ec14103b3",
        "8e43fd2988ac40c5d97702b7e5ccdf5b06d58f0e0d323f74dd5082232c1aedf7",
        "1177601320ac928b8c145d771dae78a3901a089fa4aca8def01cbff747355818",
        "9f64f3b0d9edddb14be6f71c3ac2e80455916e207ffc003316c6a515452aa7b4",
        "2d0b54af60fad4ae59ec02031f661d026f2bb95e2eeb1e6657a35036c017c595",
    ]
    .into_iter()
    .map(branch)
    .collect();
    assert_eq!(
        hex(&merkle_root(sha256d(&coinbase), &branches)),
        "5cc58f5e84aafc740d521b92a7bf72f4e56c4cc3ad1c2159f1d094f97ac34eee"
    );
}

/// A real `mining.notify` (from ESP-Miner's job-construction test).
#[test]
fn parses_a_real_notify() {
    let line = r#"{"id":null,"method":"mining.notify","params":["21554471e8","8bc8707eb169ad3bda101ae60c8d48bd00aff68a00006c8b0000000000000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4b03d8130cfabe6d6db0ba74b36edc62c9268c945b53ebf1a7865b88bcdd40235a7a63d0f5ed5b6c400100000000000000","e8714455212f736c7573682f00000000033de04728000000001976a9147c154ed1dc59609e3d26abb2df2ea3d587cd8c4188ac00000000000000002c6a4c2952534b424c4f434b3ae8c3686251b5ced65b6a65ea3e0491ac2975cd87c02b0640d3ec3c20005167770000000000000000266a24aa21a9eddffbecb5ef0a46324a3dd902fa84509a38d2c91548768845db5d6c2de0e33f6100000000",["8ef6b79382a1fc5152c7e69b2dd4e3795ed758d6fe7748ef4d96e3ad8ac180b8","5b6e1cfecd94050b763c2c6a08d4caabd54daee665aa8e41b53b39ec76b62707","f85b768f83fffbb3927f7f440cb57a5ed386f368aae88ad9b9d92e7bc1cdce15","e51b9391c39019d8a2a27becc048cc770f5d33b49a29779fdc7bed04767ca962","9f5d08316ead260455ec532a58935411a3eecf3c9948a52325de495d7dd7b776","57e10cad23a646ad3a87fcd34eae454567dbd44946e746ee6310a86b98afa4ac","f3b65cc08b25901b657efb22f0a9a23e1a61ce1e268f801d8cfe782b4a0c5e5d","648e00fe2a57dca155c7d4260bc52273b28adb42e1bceb45d5ee03f4a4c5d174","43ad393f7efe4b7a29775dbbc10b3b2737e9457764a7b39bc8ac6b470b968ac8","4964b9b2bf601dfb2bd62067acafe556650412b1e6fe32df48c39310f7dc255d","44d354ac57fcb68b408df7f5396122195384914dd2db13d5766c334fc48c2069","568514a2db82a055772218f52db2f5fa157c37a9ba16c1a239819e57f0d16218"],"20000004","1705ae3a","6470e2a1",true]}"#;
    let value: serde_json::Value = serde_json::from_str(line).expect("json");
    let notify = Notify::from_params(&value["params"]).expect("valid notify");
    assert_eq!(notify.job_id, "21554471e8");
    assert_eq!(
        (notify.version, notify.nbits, notify.ntime),
        (0x2000_0004, 0x1705_ae3a, 0x6470_e2a1)
    );
    assert_eq!(notify.merkle_branches.len(), 12);
    assert!(notify.clean_jobs);
    // ESP-Miner's expectations for this job: the merkle root ends 8a dd a8 6a for extranonce
    // 336508070fca95 + extranonce2 0000000000000000.
    let header = notify.header(&unhex("336508070fca95"), &unhex("0000000000000000"));
    assert_eq!(&header.merkle_root[28..], &[0x8a, 0xdd, 0xa8, 0x6a]);
}
