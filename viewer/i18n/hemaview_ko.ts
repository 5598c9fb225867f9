<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="ko_KR">
<context>
    <name>Actions</name>
    <message>
        <source>Open folder…</source>
        <translation>폴더 열기…</translation>
    </message>
    <message>
        <source>Open photos…</source>
        <translation>사진 열기…</translation>
    </message>
    <message>
        <source>Save label</source>
        <translation>레이블 저장</translation>
    </message>
    <message>
        <source>Pre-annotate folder</source>
        <translation>폴더 사전 주석</translation>
    </message>
    <message>
        <source>Export accepted labels…</source>
        <translation>승인된 레이블 내보내기…</translation>
    </message>
    <message>
        <source>Settings…</source>
        <translation>설정…</translation>
    </message>
    <message>
        <source>Quit</source>
        <translation>종료</translation>
    </message>
    <message>
        <source>Undo</source>
        <translation>실행 취소</translation>
    </message>
    <message>
        <source>Redo</source>
        <translation>다시 실행</translation>
    </message>
    <message>
        <source>Reset to the model&apos;s suggestion</source>
        <translation>모델 제안으로 되돌리기</translation>
    </message>
    <message>
        <source>Show overlay</source>
        <translation>오버레이 표시</translation>
    </message>
    <message>
        <source>Outline only</source>
        <translation>윤곽선만 표시</translation>
    </message>
    <message>
        <source>Raise threshold</source>
        <translation>임계값 올리기</translation>
    </message>
    <message>
        <source>Lower threshold</source>
        <translation>임계값 내리기</translation>
    </message>
    <message>
        <source>Original colours</source>
        <translation>원본 색상</translation>
    </message>
    <message>
        <source>Red-free (green channel)</source>
        <translation>무적색 (녹색 채널)</translation>
    </message>
    <message>
        <source>Contrast enhanced (CLAHE)</source>
        <translation>대비 강조 (CLAHE)</translation>
    </message>
    <message>
        <source>Zoom in</source>
        <translation>확대</translation>
    </message>
    <message>
        <source>Zoom out</source>
        <translation>축소</translation>
    </message>
    <message>
        <source>Fit to window</source>
        <translation>창에 맞추기</translation>
    </message>
    <message>
        <source>Actual size (100%)</source>
        <translation>실제 크기 (100%)</translation>
    </message>
    <message>
        <source>Previous photo</source>
        <translation>이전 사진</translation>
    </message>
    <message>
        <source>Next photo</source>
        <translation>다음 사진</translation>
    </message>
    <message>
        <source>Pan</source>
        <translation>이동</translation>
    </message>
    <message>
        <source>Brush</source>
        <translation>브러시</translation>
    </message>
    <message>
        <source>Eraser</source>
        <translation>지우개</translation>
    </message>
    <message>
        <source>Fill region or hole</source>
        <translation>영역 또는 구멍 채우기</translation>
    </message>
    <message>
        <source>Lasso: add</source>
        <translation>올가미: 추가</translation>
    </message>
    <message>
        <source>Lasso: remove</source>
        <translation>올가미: 제거</translation>
    </message>
    <message>
        <source>Smaller brush</source>
        <translation>브러시 작게</translation>
    </message>
    <message>
        <source>Larger brush</source>
        <translation>브러시 크게</translation>
    </message>
    <message>
        <source>Next lesion</source>
        <translation>다음 병변</translation>
    </message>
    <message>
        <source>Previous lesion</source>
        <translation>이전 병변</translation>
    </message>
    <message>
        <source>Accept lesion, go to the next undecided</source>
        <translation>병변 승인 후 다음 미결정 병변으로</translation>
    </message>
    <message>
        <source>Reject lesion, go to the next undecided</source>
        <translation>병변 거부 후 다음 미결정 병변으로</translation>
    </message>
    <message>
        <source>Mark in review</source>
        <translation>검토 중으로 표시</translation>
    </message>
    <message>
        <source>Mark photo accepted</source>
        <translation>사진을 승인됨으로 표시</translation>
    </message>
    <message>
        <source>Run the model anyway</source>
        <translation>그래도 모델 실행</translation>
    </message>
    <message>
        <source>Mark photo rejected</source>
        <translation>사진을 거부됨으로 표시</translation>
    </message>
    <message>
        <source>Keyboard shortcuts</source>
        <translation>단축키</translation>
    </message>
    <message>
        <source>About Hemaview</source>
        <translation>Hemaview 정보</translation>
    </message>
    <message>
        <source>&amp;File</source>
        <translation>파일(&amp;F)</translation>
    </message>
    <message>
        <source>&amp;Edit</source>
        <translation>편집(&amp;E)</translation>
    </message>
    <message>
        <source>&amp;View</source>
        <translation>보기(&amp;V)</translation>
    </message>
    <message>
        <source>&amp;Tools</source>
        <translation>도구(&amp;T)</translation>
    </message>
    <message>
        <source>&amp;Review</source>
        <translation>검토(&amp;R)</translation>
    </message>
    <message>
        <source>&amp;Help</source>
        <translation>도움말(&amp;H)</translation>
    </message>
    <message>
        <source>Zoom around the pointer</source>
        <translation>포인터 위치를 중심으로 확대/축소</translation>
    </message>
    <message>
        <source>Mouse wheel</source>
        <translation>마우스 휠</translation>
    </message>
    <message>
        <source>Brush size</source>
        <translation>브러시 크기</translation>
    </message>
    <message>
        <source>Ctrl + mouse wheel</source>
        <translation>Ctrl + 마우스 휠</translation>
    </message>
    <message>
        <source>Pan while another tool is active</source>
        <translation>다른 도구 사용 중 화면 이동</translation>
    </message>
    <message>
        <source>Space + drag, or middle button</source>
        <translation>Space + 드래그 또는 가운데 버튼</translation>
    </message>
    <message>
        <source>Tools</source>
        <translation>도구</translation>
    </message>
    <message>
        <source>Recent folders</source>
        <translation>최근 폴더</translation>
    </message>
    <message>
        <source>A and X decide the lesion under review (the highlighted row), then go on to the next undecided lesion after it, coming round to the first: a lesion passed over stays undecided until you come back to it. N and Shift+N step through every lesion, decided or not.</source>
        <translation>A와 X는 검토 중인 병변(강조된 행)을 결정한 뒤, 그다음의 미결정 병변으로 넘어갑니다(끝에서는 처음으로 돌아감). 건너뛴 병변은 다시 돌아올 때까지 미결정으로 남습니다. N과 Shift+N은 결정 여부와 관계없이 모든 병변을 차례로 이동합니다.</translation>
    </message>
    <message>
        <source>Mouse</source>
        <translation>마우스</translation>
    </message>
</context>
<context>
    <name>Dialogs</name>
    <message>
        <source>Unsaved changes</source>
        <translation>저장하지 않은 변경 내용</translation>
    </message>
    <message>
        <source>Save your changes to {name}?</source>
        <translation>{name}의 변경 내용을 저장하시겠습니까?</translation>
    </message>
    <message>
        <source>They are autosaved until you decide, so nothing is lost on a crash.</source>
        <translation>결정하실 때까지 자동 저장되므로 프로그램이 비정상 종료되어도 내용이 손실되지 않습니다.</translation>
    </message>
    <message>
        <source>someone else</source>
        <translation>다른 사용자</translation>
    </message>
    <message>
        <source>Label changed on disk</source>
        <translation>디스크의 레이블이 변경됨</translation>
    </message>
    <message>
        <source>The label of {name} was saved by {who} at {when} after you opened it.</source>
        <translation>{name}의 레이블을 연 뒤에 다른 곳에서 저장되었습니다 (저장한 사람: {who}, 시각: {when}).</translation>
    </message>
    <message>
        <source>Overwrite</source>
        <translation>덮어쓰기</translation>
    </message>
    <message>
        <source>Show both masks…</source>
        <translation>두 마스크 보기…</translation>
    </message>
    <message>
        <source>Their mask and yours</source>
        <translation>상대의 마스크와 내 마스크</translation>
    </message>
    <message>
        <source>Their mask cannot be read.</source>
        <translation>상대의 마스크를 읽을 수 없습니다.</translation>
    </message>
    <message>
        <source>Red: only {who}&apos;s ({theirs} px). Cyan: only yours ({yours} px). White: both ({both} px).</source>
        <translation>빨강: {who}만 ({theirs} px). 청록: 나만 ({yours} px). 흰색: 둘 다 ({both} px).</translation>
    </message>
    <message>
        <source>Another photo&apos;s label</source>
        <translation>다른 사진의 라벨</translation>
    </message>
    <message>
        <source>Two photos whose names differ only in their extension cannot keep their labels in one folder. Choose another label folder for your labels; the other photo&apos;s label stays as it is.</source>
        <translation>확장자만 다른 두 사진은 한 폴더에 라벨을 둘 수 없습니다. 내 라벨을 저장할 다른 라벨 폴더를 고르세요. 다른 사진의 라벨은 그대로 둡니다.</translation>
    </message>
    <message>
        <source>Choose a label folder…</source>
        <translation>라벨 폴더 선택…</translation>
    </message>
    <message>
        <source>Recover unsaved edits</source>
        <translation>저장하지 않은 편집 내용 복구</translation>
    </message>
    <message>
        <source>Hemaview closed without saving your edits to {name}.</source>
        <translation>Hemaview가 {name}의 편집 내용을 저장하지 않은 채 종료되었습니다.</translation>
    </message>
    <message>
        <source>Restore the edits autosaved at {when}?</source>
        <translation>{when}에 자동 저장된 편집 내용을 복원하시겠습니까?</translation>
    </message>
    <message>
        <source>No model suggestion</source>
        <translation>모델 제안 없음</translation>
    </message>
    <message>
        <source>{name} has no model suggestion to review, and nothing is drawn on it.</source>
        <translation>{name}에는 검토할 모델 제안이 없고, 그려진 것도 없습니다.</translation>
    </message>
    <message>
        <source>Accepting it records your own decision that it shows no haemorrhage, not a review of the model&apos;s suggestion.</source>
        <translation>승인하면 모델 제안을 검토한 것이 아니라, 출혈이 없다는 본인의 판단으로 기록됩니다.</translation>
    </message>
    <message>
        <source>Accept as no haemorrhage</source>
        <translation>출혈 없음으로 승인</translation>
    </message>
    <message>
        <source>Run the model anyway</source>
        <translation>그래도 모델 실행</translation>
    </message>
    <message>
        <source>Your name</source>
        <translation>이름</translation>
    </message>
    <message>
        <source>Every saved label records who reviewed it. Your name (kept in Settings):</source>
        <translation>저장되는 라벨마다 검토자가 기록됩니다. 이름을 입력하세요 (설정에 보관됨):</translation>
    </message>
    <message>
        <source>Unsaved edits from last time</source>
        <translation>지난번에 저장하지 않은 편집</translation>
    </message>
    <message>
        <source>Hemaview closed without saving edits to {n} photo(s):</source>
        <translation>Hemaview가 사진 {n}장의 편집을 저장하지 않고 종료되었습니다:</translation>
    </message>
    <message>
        <source>Open them to restore the edits, or keep them for later.</source>
        <translation>사진을 열어 편집을 복원하거나, 나중을 위해 보관하세요.</translation>
    </message>
    <message>
        <source>Open these photos</source>
        <translation>이 사진들 열기</translation>
    </message>
    <message>
        <source>Later</source>
        <translation>나중에</translation>
    </message>
    <message>
        <source>Discard the edits</source>
        <translation>편집 버리기</translation>
    </message>
    <message>
        <source>Choose a label folder</source>
        <translation>레이블 폴더 선택</translation>
    </message>
    <message>
        <source>Labels cannot be saved beside these photos: {problem}

Choose a folder for the labels.</source>
        <translation>이 사진들과 같은 위치에 레이블을 저장할 수 없습니다: {problem}

레이블을 저장할 폴더를 선택하십시오.</translation>
    </message>
    <message>
        <source>&lt;h3&gt;Hemaview {version}&lt;/h3&gt;&lt;p&gt;Annotation assistance for haemorrhages in colour fundus photographs. It assists review; it does not diagnose.&lt;/p&gt;&lt;p&gt;{model}&lt;/p&gt;&lt;p&gt;The shipped model and sample photos use the {attribution}&lt;/p&gt;</source>
        <translation>&lt;h3&gt;Hemaview {version}&lt;/h3&gt;&lt;p&gt;컬러 안저 사진의 출혈 주석 작업을 보조합니다. 검토를 돕는 도구이며 진단을 내리지 않습니다.&lt;/p&gt;&lt;p&gt;{model}&lt;/p&gt;&lt;p&gt;기본 제공 모델과 예제 사진은 다음 데이터를 사용합니다: {attribution}&lt;/p&gt;</translation>
    </message>
    <message>
        <source>Label folder</source>
        <translation>레이블 폴더</translation>
    </message>
    <message>
        <source>Overwrite their label with yours? Theirs is kept in the label folder&apos;s &apos;overwritten&apos; folder. Your edits stay open if you cancel.</source>
        <translation>상대의 라벨을 내 라벨로 덮어쓰시겠습니까? 상대의 라벨은 라벨 폴더의 &apos;overwritten&apos; 폴더에 보관됩니다. 취소하면 편집 내용은 그대로 열려 있습니다.</translation>
    </message>
    <message>
        <source>Keyboard shortcuts</source>
        <translation>단축키</translation>
    </message>
    <message>
        <source>About Hemaview</source>
        <translation>Hemaview 정보</translation>
    </message>
</context>
<context>
    <name>ImageCanvas</name>
    <message>
        <source>Nothing to fill here: click inside a hole or a lesion</source>
        <translation>채울 영역이 없습니다: 구멍이나 병변 안쪽을 클릭하십시오</translation>
    </message>
</context>
<context>
    <name>LabelSaving</name>
    <message>
        <source>Not saved: a label needs the name of its reviewer.</source>
        <translation>저장하지 않음: 라벨에는 검토자 이름이 필요합니다.</translation>
    </message>
    <message>
        <source>Not saved</source>
        <translation>저장되지 않음</translation>
    </message>
    <message>
        <source>Saved the label of {name}</source>
        <translation>{name}의 레이블을 저장했습니다</translation>
    </message>
    <message>
        <source>Autosave failed: {reason}. Your edits are still here; save them with Ctrl+S.</source>
        <translation>자동 저장 실패: {reason}. 편집 내용은 그대로 있으니 Ctrl+S로 저장하세요.</translation>
    </message>
    <message>
        <source>Export accepted labels to</source>
        <translation>승인된 레이블을 내보낼 폴더</translation>
    </message>
    <message>
        <source>{n} accepted labels exported to {folder}.</source>
        <translation>승인된 레이블 {n}개를 {folder}에 내보냈습니다.</translation>
    </message>
    <message>
        <source>Export accepted labels</source>
        <translation>승인된 레이블 내보내기</translation>
    </message>
</context>
<context>
    <name>LesionList</name>
    <message>
        <source>Area (px)</source>
        <translation>면적 (px)</translation>
    </message>
    <message>
        <source>Max p</source>
        <translation>최대 확률</translation>
    </message>
    <message>
        <source>Decision</source>
        <translation>판정</translation>
    </message>
    <message>
        <source>accepted</source>
        <translation>승인됨</translation>
    </message>
    <message>
        <source>rejected</source>
        <translation>거부됨</translation>
    </message>
    <message>
        <source>to review</source>
        <translation>검토 대기</translation>
    </message>
</context>
<context>
    <name>LesionReview</name>
    <message>
        <source>Overlay shown: you are working on it.</source>
        <translation>오버레이를 다시 표시했습니다: 지금 편집 중인 내용입니다.</translation>
    </message>
    <message>
        <source>accepted</source>
        <translation>승인됨</translation>
    </message>
    <message>
        <source>rejected</source>
        <translation>거부됨</translation>
    </message>
    <message>
        <source>Lesion {n} {decision}.</source>
        <translation>병변 {n}: {decision}.</translation>
    </message>
    <message>
        <source>Now lesion {n}; {left} undecided.</source>
        <translation>이제 병변 {n}, 미결정 {left}개.</translation>
    </message>
    <message>
        <source>Every lesion is decided.</source>
        <translation>모든 병변이 결정되었습니다.</translation>
    </message>
</context>
<context>
    <name>MainWindow</name>
    <message>
        <source>Photos</source>
        <translation>사진</translation>
    </message>
    <message>
        <source>Review</source>
        <translation>검토</translation>
    </message>
    <message>
        <source>no model is loaded</source>
        <translation>모델이 로드되지 않았습니다</translation>
    </message>
    <message>
        <source>The model cannot be used: {reason}</source>
        <translation>모델을 사용할 수 없습니다: {reason}</translation>
    </message>
    <message>
        <source>Opening {name}…</source>
        <translation>{name} 여는 중…</translation>
    </message>
    <message>
        <source>Every photo in the list is reviewed.</source>
        <translation>목록의 모든 사진을 검토했습니다.</translation>
    </message>
    <message>
        <source>Running the model on {name} anyway…</source>
        <translation>{name}에 모델을 그래도 실행하는 중…</translation>
    </message>
    <message>
        <source>The threshold moves the model&apos;s suggestion; your edited mask stays (Reset applies it).</source>
        <translation>임계값은 모델 제안에만 적용되며 편집한 마스크는 그대로 유지됩니다 (‘모델 제안으로 되돌리기’를 하면 적용됩니다).</translation>
    </message>
</context>
<context>
    <name>PhotoItemDelegate</name>
    <message>
        <source>To do</source>
        <translation>미검토</translation>
    </message>
    <message>
        <source>In review</source>
        <translation>검토 중</translation>
    </message>
    <message>
        <source>Accepted</source>
        <translation>승인됨</translation>
    </message>
    <message>
        <source>Rejected</source>
        <translation>거부됨</translation>
    </message>
    <message>
        <source>Unreadable</source>
        <translation>읽을 수 없음</translation>
    </message>
    <message>
        <source>No overlay: {0}</source>
        <translation>오버레이 없음: {0}</translation>
    </message>
    <message>
        <source>Predicting…</source>
        <translation>예측 중…</translation>
    </message>
    <message>
        <source>Waiting for the model</source>
        <translation>모델 대기 중</translation>
    </message>
    <message>
        <source>1 lesion</source>
        <translation>병변 1개</translation>
    </message>
    <message>
        <source>{0} lesions</source>
        <translation>병변 {0}개</translation>
    </message>
    <message>
        <source>{0:.1%} unsure</source>
        <translation>불확실 {0:.1%}</translation>
    </message>
</context>
<context>
    <name>PhotoListModel</name>
    <message>
        <source>The saved label cannot be used: {0}</source>
        <translation>저장된 레이블을 사용할 수 없습니다: {0}</translation>
    </message>
</context>
<context>
    <name>PhotoListWidget</name>
    <message>
        <source>Next photo</source>
        <translation>다음 사진</translation>
    </message>
    <message>
        <source>Previous photo</source>
        <translation>이전 사진</translation>
    </message>
    <message>
        <source>All photos</source>
        <translation>모든 사진</translation>
    </message>
    <message>
        <source>To do</source>
        <translation>미검토</translation>
    </message>
    <message>
        <source>In review</source>
        <translation>검토 중</translation>
    </message>
    <message>
        <source>Accepted</source>
        <translation>승인됨</translation>
    </message>
    <message>
        <source>Rejected</source>
        <translation>거부됨</translation>
    </message>
    <message>
        <source>Unreadable or failed</source>
        <translation>읽기 불가 또는 실패</translation>
    </message>
    <message>
        <source>Sort by name</source>
        <translation>이름순 정렬</translation>
    </message>
    <message>
        <source>Most lesions first</source>
        <translation>병변 많은 순</translation>
    </message>
    <message>
        <source>Most uncertain first</source>
        <translation>불확실성 높은 순</translation>
    </message>
    <message>
        <source>1 photo</source>
        <translation>사진 1장</translation>
    </message>
    <message>
        <source>{0} photos</source>
        <translation>사진 {0}장</translation>
    </message>
    <message>
        <source>{0} of {1} photos</source>
        <translation>사진 {1}장 중 {0}장</translation>
    </message>
</context>
<context>
    <name>PhotoSources</name>
    <message>
        <source>Open a folder of photos</source>
        <translation>사진 폴더 열기</translation>
    </message>
    <message>
        <source>Open photos</source>
        <translation>사진 열기</translation>
    </message>
    <message>
        <source>Photos (*.jpg *.jpeg *.png *.tif *.tiff *.bmp *.dcm)</source>
        <translation>사진 (*.jpg *.jpeg *.png *.tif *.tiff *.bmp *.dcm)</translation>
    </message>
    <message>
        <source>{n} new photo(s) in {folder}</source>
        <translation>{folder}에 새 사진 {n}장</translation>
    </message>
</context>
<context>
    <name>Preannotator</name>
    <message>
        <source>Pre-annotating %v/%m</source>
        <translation>사전 주석 중 %v/%m</translation>
    </message>
    <message>
        <source>Cancel</source>
        <translation>취소</translation>
    </message>
    <message>
        <source>Server address not usable</source>
        <translation>서버 주소를 사용할 수 없음</translation>
    </message>
    <message>
        <source>Server ready</source>
        <translation>서버 준비됨</translation>
    </message>
    <message>
        <source>Server unavailable</source>
        <translation>서버 사용 불가</translation>
    </message>
</context>
<context>
    <name>ReviewPanel</name>
    <message>
        <source>Show overlay</source>
        <translation>오버레이 표시</translation>
    </message>
    <message>
        <source>Outline only</source>
        <translation>윤곽선만 표시</translation>
    </message>
    <message>
        <source>Original colours</source>
        <translation>원본 색상</translation>
    </message>
    <message>
        <source>Red-free (green)</source>
        <translation>무적색 (녹색)</translation>
    </message>
    <message>
        <source>Contrast enhanced (CLAHE)</source>
        <translation>대비 강조 (CLAHE)</translation>
    </message>
    <message>
        <source>Overlay</source>
        <translation>오버레이</translation>
    </message>
    <message>
        <source>Opacity</source>
        <translation>불투명도</translation>
    </message>
    <message>
        <source>Threshold</source>
        <translation>임계값</translation>
    </message>
    <message>
        <source>Display</source>
        <translation>표시 방식</translation>
    </message>
    <message>
        <source>Review</source>
        <translation>검토</translation>
    </message>
    <message>
        <source>To do</source>
        <translation>미검토</translation>
    </message>
    <message>
        <source>In review</source>
        <translation>검토 중</translation>
    </message>
    <message>
        <source>Accepted</source>
        <translation>승인됨</translation>
    </message>
    <message>
        <source>Rejected</source>
        <translation>거부됨</translation>
    </message>
    <message>
        <source>This photo has no colour (greyscale or red-free). The model was trained on colour photos and finds fewer lesions on it: look for the ones it missed.</source>
        <translation>이 사진은 색이 없습니다(흑백 또는 무적색). 모델은 컬러 사진으로 학습되어 이런 사진에서는 병변을 덜 찾습니다: 놓친 병변을 살펴보세요.</translation>
    </message>
    <message>
        <source>Suggested lesions</source>
        <translation>제안된 병변</translation>
    </message>
    <message>
        <source>Run on request: this photo was refused as not a fundus photograph, and the model saw the whole photo. Check the suggestion with care.</source>
        <translation>요청에 따라 실행됨: 이 사진은 안저 사진이 아닌 것으로 판정되었고, 모델은 사진 전체를 보았습니다. 제안을 주의해서 확인하세요.</translation>
    </message>
    <message>
        <source>Field of view estimated: no circular edge was found, so the suggestion may be off near the photo&apos;s edge.</source>
        <translation>시야 추정됨: 원형 경계를 찾지 못해, 사진 가장자리 근처의 제안이 어긋날 수 있습니다.</translation>
    </message>
    <message>
        <source>The model has not run on this photo yet: its suggestion appears here as soon as the model is ready.</source>
        <translation>이 사진에는 아직 모델이 실행되지 않았습니다: 모델이 준비되는 대로 제안이 여기에 표시됩니다.</translation>
    </message>
    <message>
        <source>No model suggestion for this photo.</source>
        <translation>이 사진에 대한 모델 제안이 없습니다.</translation>
    </message>
    <message>
        <source>Against the suggestion: {added} px added, {removed} px removed, Dice {dice}</source>
        <translation>제안 대비: {added} px 추가, {removed} px 제거, Dice {dice}</translation>
    </message>
</context>
<context>
    <name>SettingsDialog</name>
    <message>
        <source>Settings</source>
        <extracomment>The space a QLineEdit keeps on each side of its text, inside its contents rectangle (QLineEditPrivate::horizontalMargin).</extracomment>
        <translation>설정</translation>
    </message>
    <message>
        <source>Name recorded in saved labels</source>
        <translation>저장된 레이블에 기록되는 이름</translation>
    </message>
    <message>
        <source>System language</source>
        <translation>시스템 언어</translation>
    </message>
    <message>
        <source>Filled (otherwise outline only)</source>
        <translation>채우기 (끄면 윤곽선만 표시)</translation>
    </message>
    <message>
        <source>A hemaview-labels folder beside the photos</source>
        <translation>사진과 같은 위치의 hemaview-labels 폴더</translation>
    </message>
    <message>
        <source>Browse…</source>
        <translation>찾아보기…</translation>
    </message>
    <message>
        <source>host:port of a Triton server (empty: this computer only)</source>
        <translation>Triton 서버의 host:port (비워 두면 이 컴퓨터에서만 실행)</translation>
    </message>
    <message>
        <source> s per 10 photos</source>
        <translation> 초 (사진 10장당)</translation>
    </message>
    <message>
        <source>Use TLS</source>
        <translation>TLS 사용</translation>
    </message>
    <message>
        <source>Review</source>
        <translation>검토</translation>
    </message>
    <message>
        <source>Reviewer</source>
        <translation>검토자</translation>
    </message>
    <message>
        <source>Language</source>
        <translation>언어</translation>
    </message>
    <message>
        <source>Label folder</source>
        <translation>레이블 폴더</translation>
    </message>
    <message>
        <source>Overlay</source>
        <translation>오버레이</translation>
    </message>
    <message>
        <source>Colour</source>
        <translation>색상</translation>
    </message>
    <message>
        <source>Opacity</source>
        <translation>불투명도</translation>
    </message>
    <message>
        <source>Remote inference server</source>
        <translation>원격 추론 서버</translation>
    </message>
    <message>
        <source>Address</source>
        <translation>주소</translation>
    </message>
    <message>
        <source>Local time budget</source>
        <translation>로컬 처리 시간 한도</translation>
    </message>
    <message>
        <source>Overlay colour</source>
        <translation>오버레이 색상</translation>
    </message>
</context>
<context>
    <name>StatusDecisions</name>
    <message>
        <source>Accepted as your own annotation: there was no model suggestion for this photo.</source>
        <translation>본인의 주석으로 승인했습니다: 이 사진에는 모델 제안이 없었습니다.</translation>
    </message>
    <message>
        <source>{name}: the model has not run on this photo yet; accept it once its suggestion shows.</source>
        <translation>{name}: 이 사진에는 아직 모델이 실행되지 않았습니다. 제안이 표시된 뒤 승인하세요.</translation>
    </message>
</context>
<context>
    <name>StatusLine</name>
    <message>
        <source>Loading the model…</source>
        <translation>모델을 불러오는 중…</translation>
    </message>
    <message>
        <source>GPU</source>
        <translation>GPU</translation>
    </message>
    <message>
        <source>CPU</source>
        <translation>CPU</translation>
    </message>
    <message>
        <source>remote server</source>
        <translation>원격 서버</translation>
    </message>
    <message>
        <source>Model on {where}</source>
        <translation>모델 실행 위치: {where}</translation>
    </message>
    <message>
        <source>No model loaded</source>
        <translation>불러온 모델 없음</translation>
    </message>
    <message>
        <source>No model: photos are shown without overlay</source>
        <translation>모델 없음: 사진을 오버레이 없이 표시합니다</translation>
    </message>
    <message>
        <source>Model {name} {version}, file {file} (SHA-256 {sha}), running on the {where}.</source>
        <translation>모델 {name} {version}, 파일 {file} (SHA-256 {sha}), 실행 위치: {where}.</translation>
    </message>
    <message>
        <source>{name}: waiting for the model; its suggestion follows.</source>
        <translation>{name}: 모델을 기다리는 중입니다. 제안이 곧 표시됩니다.</translation>
    </message>
    <message>
        <source>{name}: {problem}. Review &gt; Run the model anyway runs it on the whole photo.</source>
        <translation>{name}: {problem}. 검토 &gt; 그래도 모델 실행을 누르면 사진 전체에 모델을 실행합니다.</translation>
    </message>
    <message>
        <source>{name}: {problem}</source>
        <translation>{name}: {problem}</translation>
    </message>
    <message>
        <source>Brush {size} px</source>
        <translation>브러시 {size} px</translation>
    </message>
</context>
</TS>
